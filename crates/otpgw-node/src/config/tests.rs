use super::*;

const EXAMPLE: &str = include_str!("../../../../deploy/otpgw.toml");

#[test]
fn example_config_is_valid() {
    let c = Config::parse(EXAMPLE, "deploy/otpgw.toml").unwrap();
    assert_eq!(c.brands.len(), 1);
    assert_eq!(c.carrier_configs()[0].binds, 2);
    assert_eq!(
        c.routes().carriers_for("demo", "447400900123"),
        Some(&["sim".to_string()][..])
    );
}

#[test]
fn http_and_verify_sections_are_checked() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    let h = c.http_config().unwrap();
    assert_eq!(h.max_body, 65_536);
    let v = c.verify_config().unwrap();
    assert_eq!((v.rules.max_checks, v.per_number_per_hour), (5, 5));
    assert!(c.brand_configs()[0].api_key_hash.is_some());
    let bad = EXAMPLE
        .replace(
            "secret = \"example-only-CHANGE-ME-0123456789abcdef0123456789abcdef\"",
            "secret = \"short\"",
        )
        .replace("{code}. It", "code. It")
        .replace("api_key_hash = \"sha256:", "api_key_hash = \"sha255:")
        .replace("max_body_bytes = 65536", "max_body_bytes = 12")
        .replace("example-only-CHANGE-ME-webhook", "tiny");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    for want in [
        "verify.secret: at least 32 bytes",
        "verify.template: must contain {code}",
        "brand[0].api_key_hash",
        "http.max_body_bytes",
        "brand[0].webhook_secret: at least 16",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    let env = EXAMPLE.replace(
        "secret = \"example-only-CHANGE-ME-0123456789abcdef0123456789abcdef\"",
        "secret_env = \"OTPGW_TEST_SURELY_UNSET_VAR\"",
    );
    let e = Config::parse(&env, "x.toml").unwrap_err().to_string();
    assert!(e.contains("OTPGW_TEST_SURELY_UNSET_VAR is not set"), "{e}");
    let no_keys = EXAMPLE.replace("api_key_hash", "# api_key_hash");
    let e = Config::parse(&no_keys, "x.toml").unwrap_err().to_string();
    assert!(e.contains("no [[brand]] has an api_key_hash"), "{e}");
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let bad = EXAMPLE.replace(
        "max_connections = 1000",
        "max_connections = 1000\nmax_conections = 5",
    );
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("max_conections"), "{e}");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn unknown_carrier_in_route_is_rejected() {
    let bad = EXAMPLE.replace("default = [\"sim\"]", "default = [\"nope\"]");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(
        e.contains("routes.default: unknown carrier \"nope\""),
        "{e}"
    );
}

#[test]
fn store_is_embedded_unless_memory_is_named() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    assert_eq!(c.store.backend, Backend::Embedded);
    let no_store = EXAMPLE.replace("[store]", "[unused_store_section_marker]");
    assert!(
        Config::parse(&no_store, "x").is_err(),
        "unknown section must be refused"
    );
    let mem = EXAMPLE.replace("backend = \"embedded\"", "backend = \"memory\"");
    assert_eq!(
        Config::parse(&mem, "x").unwrap().store.backend,
        Backend::Memory
    );
    let bad = EXAMPLE.replace("backend = \"embedded\"", "backend = \"floppy\"");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("floppy") || e.contains("backend"), "{e}");
}

#[test]
fn redis_backend_needs_its_url_and_a_node_id() {
    let bare = EXAMPLE.replace("backend = \"embedded\"", "backend = \"redis\"");
    let e = Config::parse(&bare, "x.toml").unwrap_err().to_string();
    assert!(
        e.contains("store.redis_url") && e.contains("store.node_id"),
        "{e}"
    );
    let bad_node = bare.replace(
        "backend = \"redis\"",
        "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:6390/0\"\nnode_id = \"a b\"",
    );
    let e = Config::parse(&bad_node, "x.toml").unwrap_err().to_string();
    assert!(
        e.contains("store.node_id") && !e.contains("store.redis_url"),
        "{e}"
    );
    let ok = bare.replace(
        "backend = \"redis\"",
        "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:6390/0\"\nnode_id = \"node-1\"",
    );
    let e = Config::parse(&ok, "x.toml").unwrap_err().to_string();
    assert!(e.contains("carrier[0].receipt_ids"), "{e}");
    let ok = ok.replace("receipt_ids = \"auto\"", "receipt_ids = \"same\"");
    let c = Config::parse(&ok, "x.toml").unwrap();
    assert_eq!(c.store.backend, Backend::Redis);
    assert_eq!(c.redis_config().node, "node-1");
    assert_eq!(c.store.redis_prefix, "otpgw");
}

/// The example with `backend = "redis"`, node `n1`, and `store` in `[store]`.
fn with_redis_store(store: &str) -> Result<Config, ConfigError> {
    let text = EXAMPLE
        .replace(
            "backend = \"embedded\"",
            &format!("backend = \"redis\"\nnode_id = \"n1\"\n{store}"),
        )
        .replace("receipt_ids = \"auto\"", "receipt_ids = \"same\"");
    Config::parse(&text, "x.toml")
}

#[test]
fn a_redis_cluster_replaces_the_url_and_is_checked() {
    let with = with_redis_store;
    let c =
        with("redis_cluster = [\"10.0.0.5:7000\", \"r2:7001\"]\nredis_password = \"pw\"").unwrap();
    let rc = c.redis_config();
    let cl = rc.cluster.as_ref().expect("cluster");
    assert_eq!(cl.nodes, ["10.0.0.5:7000", "r2:7001"]);
    assert_eq!(cl.password.as_deref(), Some("pw"));
    assert_eq!(rc.partitions, 16, "the documented default");
    let e = with(
        "redis_url = \"redis://127.0.0.1:6379/0\"\nredis_cluster = [\"bad\"]\nredis_partitions = 0\nredis_master_name = \"m\"\nredis_prefix = \"a{b}\"",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "set one of redis_url, redis_sentinels or redis_cluster",
        "redis_cluster[0] = \"bad\": must be host:port",
        "redis_partitions = 0: must be 1 to 1024",
        "redis_prefix: must be a non-empty word without braces",
        "redis_master_name: goes with redis_sentinels",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn redis_sentinels_replace_the_url_and_are_checked() {
    let with = with_redis_store;
    let c = with(
        "redis_sentinels = [\"10.0.0.5:26379\", \"s2:26380\"]\nredis_master_name = \"otpgw\"\n\
         redis_password = \"pw\"\nredis_sentinel_password_env = \"OTPGW_TEST_NO_SUCH_VAR_X\"",
    );
    let e = c.unwrap_err().to_string();
    assert!(
        e.contains("redis_sentinel_password_env") && e.contains("OTPGW_TEST_NO_SUCH_VAR_X"),
        "{e}"
    );
    let c = with(
        "redis_sentinels = [\"10.0.0.5:26379\", \"s2:26380\"]\nredis_master_name = \"otpgw\"\nredis_password = \"pw\"",
    )
    .unwrap();
    let rc = c.redis_config();
    let s = rc.sentinels.as_ref().expect("sentinels");
    assert_eq!(s.addrs, ["10.0.0.5:26379", "s2:26380"]);
    assert_eq!(s.master, "otpgw");
    assert_eq!(s.password.as_deref(), Some("pw"));
    assert!(s.sentinel_password.is_none());
    assert!(
        !format!("{:?}", c.store).contains("pw\""),
        "the store's Debug shows no password: {:?}",
        c.store
    );
    let e = with("redis_url = \"redis://127.0.0.1:6379/0\"\nredis_sentinels = [\"bad\", \"h:0\"]")
        .unwrap_err()
        .to_string();
    for want in [
        "set either redis_url or redis_sentinels",
        "redis_sentinels[0] = \"bad\"",
        "redis_sentinels[1] = \"h:0\"",
        "store.redis_master_name: required",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    let e = with("redis_url = \"redis://127.0.0.1:6379/0\"\nredis_master_name = \"otpgw\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("redis_master_name: goes with redis_sentinels"),
        "{e}"
    );
}

#[test]
fn semantic_problems_name_their_fields() {
    let bad = EXAMPLE.replace("binds = 2", "binds = 0").replace(
        "password_hash = ",
        "password = \"much-too-long\"\npassword_hash = ",
    );
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("carrier[0].binds = 0"), "{e}");
    assert!(e.contains("brand[0].password"), "{e}");
    assert!(
        !e.contains("much-too-long"),
        "a password must never be echoed: {e}"
    );
}

#[test]
fn semantic_problems_carry_their_line() {
    let bad = EXAMPLE.replace("binds = 2\n", "binds = 0\n");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    let line = EXAMPLE.lines().position(|l| l == "binds = 2").unwrap() + 1;
    assert!(
        e.contains(&format!("line {line}: carrier[0].binds = 0")),
        "{e}"
    );
    let bad = EXAMPLE.replace("default = [\"sim\"]", "default = [\"nope\"]");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    let line = EXAMPLE
        .lines()
        .position(|l| l.starts_with("default = ["))
        .unwrap()
        + 1;
    assert!(e.contains(&format!("line {line}: routes.default")), "{e}");
}

#[test]
fn locate_finds_nth_tables_and_keys() {
    let t = "[server]\nlisten = 1\n[[carrier]]\nname = \"a\"\n[[carrier]]\nname = \"b\"\nbinds = 0\n[[routes.prefix]]\ncarriers = []\n";
    assert_eq!(locate(t, "server.listen"), Some(2));
    assert_eq!(locate(t, "carrier[1].binds"), Some(7));
    assert_eq!(locate(t, "carrier[1].window"), Some(5));
    assert_eq!(locate(t, "carrier[0].name"), Some(4));
    assert_eq!(locate(t, "routes.prefix[0].carriers"), Some(9));
    assert_eq!(locate(t, "brand[0].password"), None);
}

#[test]
fn dispatch_settings_are_read_and_checked() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    assert_eq!(c.queue.refuse_after_down_ms, 10_000);
    let k = &c.carrier_configs()[0];
    assert_eq!(k.on_unanswered, otpgw_carrier::Unanswered::Resend);
    assert_eq!(k.retry.throttle_base, 20);
    assert_eq!(k.retry.base, 200);
    assert_eq!(k.failover_attempts, 2);
    let fail = EXAMPLE.replace("unanswered = \"resend\"", "unanswered = \"fail\"");
    let k = Config::parse(&fail, "x").unwrap().carrier_configs()[0].clone();
    assert_eq!(k.on_unanswered, otpgw_carrier::Unanswered::Fail);
    let bad = EXAMPLE.replace("unanswered = \"resend\"", "unanswered = \"maybe\"");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("maybe") && e.contains("line"), "{e}");
    let bad = EXAMPLE.replace("throttle_retry_ms = 20", "throttle_retry_ms = 0");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("throttle_retry_ms"), "{e}");
}

#[test]
fn brand_credentials_and_limits_are_checked() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    assert_eq!(c.brand_configs()[0].max_binds, 10);
    assert!(c.brand_configs()[0].allowed_nets.is_empty());
    let weak = EXAMPLE.replace("$argon2id$", "$argon2i$");
    let e = Config::parse(&weak, "x.toml").unwrap_err().to_string();
    assert!(
        e.contains("brand[0].password_hash") && e.contains("argon2id"),
        "{e}"
    );
    let nets = EXAMPLE.replace(
        "allowed_ips = []",
        "allowed_ips = [\"10.0.0.0/8\", \"192.0.2.7\", \"nonsense\"]",
    );
    let e = Config::parse(&nets, "x.toml").unwrap_err().to_string();
    assert!(e.contains("\"nonsense\" is not an address"), "{e}");
    let nets = nets.replace(", \"nonsense\"", "");
    let b = &Config::parse(&nets, "x").unwrap().brand_configs()[0];
    assert!(b.allows("10.9.8.7".parse().unwrap()));
    assert!(b.allows("192.0.2.7".parse().unwrap()));
    assert!(!b.allows("192.0.2.8".parse().unwrap()));
}

#[test]
fn admin_tokens_and_audit_are_checked() {
    let h = format!("sha256:{}", "ab".repeat(32));
    let good = format!(
        "{EXAMPLE}\n[[ops.admin]]\nname = \"alice\"\nrole = \"operate\"\ntoken_hash = \"{h}\"\n\
         [[ops.admin]]\nname = \"grafana\"\nrole = \"read\"\ntoken_hash = \"{h}\"\n\
         [audit]\npath = \"/tmp/audit.log\"\n"
    );
    let c = Config::parse(&good, "x").unwrap();
    assert_eq!(c.ops.admin.len(), 2);
    assert_eq!(c.ops.admin[1].role, AdminRole::Read);
    assert!(
        !format!("{:?}", c.ops.admin[0]).contains("abab"),
        "Debug hides the hash"
    );
    assert!(c.audit.is_some());
    let bad = format!(
        "{EXAMPLE}\n[[ops.admin]]\nname = \"alice\"\nrole = \"operate\"\ntoken_hash = \"plain\"\n\
         [[ops.admin]]\nname = \"alice\"\nrole = \"read\"\ntoken_hash = \"{h}\"\n"
    );
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("ops.admin[0].token_hash"), "{e}");
    assert!(e.contains("ops.admin[1].name: empty or used twice"), "{e}");
    let role = good.replace("role = \"read\"", "role = \"root\"");
    assert!(Config::parse(&role, "x.toml").is_err());
}

#[test]
fn secrets_come_from_the_file_the_environment_or_a_file() {
    let dir = std::env::temp_dir().join(format!("otpgw-cfg-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{v}\n")).unwrap();
        p.display().to_string()
    };
    let pw = write("carrier-pw", "c4rr13r");
    let verify = write("verify", "0123456789abcdef0123456789abcdef-from-file");
    let hook = write("hook", "webhook-secret-from-file");
    let admin = write("admin", "admin-token-from-a-file");
    let text = EXAMPLE
        .replacen(
            "password = \"secret\"",
            &format!("password_file = \"{pw}\""),
            1,
        )
        .replace(
            "secret = \"example-only-CHANGE-ME-0123456789abcdef0123456789abcdef\"",
            &format!("secret_file = \"{verify}\""),
        )
        .replace(
            "webhook_secret = \"example-only-CHANGE-ME-webhook\"",
            &format!("webhook_secret_file = \"{hook}\""),
        )
        .replace(
            "listen = \"127.0.0.1:9464\"",
            &format!("listen = \"127.0.0.1:9464\"\nadmin_token_file = \"{admin}\""),
        );
    let c = Config::parse(&text, "x").unwrap();
    assert_eq!(c.carriers[0].password().unwrap(), "c4rr13r");
    assert_eq!(c.carrier_configs()[0].password, "c4rr13r");
    assert_eq!(
        c.verify.as_ref().unwrap().secret_bytes().unwrap(),
        b"0123456789abcdef0123456789abcdef-from-file"
    );
    assert_eq!(
        c.brands[0].webhook_secret().unwrap().as_deref(),
        Some("webhook-secret-from-file")
    );
    assert_eq!(
        c.ops.admin_token().unwrap().as_deref(),
        Some("admin-token-from-a-file")
    );
    // No secret in the Debug of the whole config.
    let dbg = format!("{c:?}");
    for s in ["c4rr13r", "from-file", "webhook-secret", "admin-token-from"] {
        assert!(!dbg.contains(s), "{s} in Debug");
    }
    // A missing variable or file is named; two ways at once are refused.
    let bad = EXAMPLE
        .replacen(
            "password = \"secret\"",
            "password_env = \"OTPGW_TEST_NO_SUCH_VARIABLE\"",
            1,
        )
        .replace(
            "webhook_secret = \"example-only-CHANGE-ME-webhook\"",
            "webhook_secret_file = \"/nonexistent/otpgw/hook\"",
        )
        .replace(
            "secret = \"example-only-CHANGE-ME-0123456789abcdef0123456789abcdef\"",
            "secret = \"example-only-CHANGE-ME-0123456789abcdef0123456789abcdef\"\nsecret_env = \"X\"",
        );
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    for want in [
        "carrier[0].password_env: the environment variable OTPGW_TEST_NO_SUCH_VARIABLE is not set",
        "webhook_secret_file: cannot read /nonexistent/otpgw/hook",
        "set exactly one of secret, secret_env and secret_file",
    ] {
        assert!(e.contains(want), "{want} not in {e}");
    }
}

#[test]
fn encryption_keys_are_checked_up_front() {
    let dir = std::env::temp_dir().join(format!("otpgw-cfg-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let k1 = dir.join("k1.key");
    std::fs::write(&k1, format!("{}\n", "ab".repeat(32))).unwrap();
    let with = |section: &str| format!("{EXAMPLE}\n{section}");
    let good = with(&format!(
        "[store.encryption]\nactive = \"k2\"\n[[store.encryption.keys]]\nid = \"k1\"\nkey_file = \"{}\"\n\
         [[store.encryption.keys]]\nid = \"k2\"\nkey = \"{}\"\n",
        k1.display(),
        "cd".repeat(32)
    ));
    let c = Config::parse(&good, "x").unwrap();
    let ring = c.store.encryption.as_ref().unwrap().keyring().unwrap();
    assert_eq!(ring.active(), "k2");
    assert!(ring.has("k1") && ring.has("k2"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(&"cd".repeat(32)), "a key in Debug");
    for (section, says) in [
        (
            "[store.encryption]\nactive = \"k1\"\n[[store.encryption.keys]]\nid = \"k1\"\nkey_file = \"/nonexistent/otpgw.key\"\n",
            "store.encryption.keys[0].key_file: cannot read /nonexistent/otpgw.key",
        ),
        (
            "[store.encryption]\nactive = \"k1\"\n[[store.encryption.keys]]\nid = \"k1\"\nkey = \"abcd\"\n",
            "store.encryption.keys[0].key: a key is 64 hexadecimal characters",
        ),
        (
            "[store.encryption]\nactive = \"k9\"\n[[store.encryption.keys]]\nid = \"k1\"\nkey_env = \"OTPGW_TEST_NO_SUCH_KEY\"\n",
            "key_env: the environment variable OTPGW_TEST_NO_SUCH_KEY is not set",
        ),
    ] {
        let e = Config::parse(&with(section), "x").unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    let e = Config::parse(
        &with(&format!(
            "[store.encryption]\nactive = \"k9\"\n[[store.encryption.keys]]\nid = \"k1\"\nkey_file = \"{}\"\n",
            k1.display()
        )),
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("active key \"k9\" is not among the keys"), "{e}");
}

#[test]
fn fraud_settings_are_checked_and_on_by_default() {
    use otpgw_accept::fraud::FraudMode;
    use otpgw_accept::number::Kind;
    let c = Config::parse(EXAMPLE, "x").unwrap();
    let f = &c.brand_configs()[0].fraud;
    assert_eq!(f.mode, FraudMode::Block);
    assert_eq!(f.allowed_types, [Kind::Mobile, Kind::FixedLineOrMobile]);
    let g = c.verify_config().unwrap().guard;
    assert_eq!(
        g,
        otpgw_verify::guard::GuardConfig {
            ratio: 0.33,
            ..Default::default()
        }
    );
    // The example with the first line setting `to`'s key replaced by `to`.
    let set = |text: &str, to: &str| {
        let key = format!("{} =", to.split(' ').next().unwrap());
        let old = text
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap()
            .to_string();
        text.replacen(&old, to, 1)
    };
    let brand = |to: &str| set(EXAMPLE, to);
    let text = set(
        &set(
            &brand("fraud_mode = \"shadow\""),
            "allowed_countries = [\"GB\"]",
        ),
        "max_per_country_per_day = { GB = 7 }",
    );
    let c = Config::parse(&text, "x").unwrap();
    let f = &c.brand_configs()[0].fraud;
    assert_eq!((f.mode, f.country_cap("GB")), (FraudMode::Shadow, Some(7)));
    for (text, says) in [
        (
            brand("fraud_mode = \"on\""),
            "brand[0].fraud_mode: \"on\" must be",
        ),
        (
            brand("allowed_number_types = [\"cell\"]"),
            "brand[0].allowed_number_types: \"cell\" is not one of mobile",
        ),
        (
            brand("allowed_countries = [\"uk\"]"),
            "country \"uk\" must be an ISO 3166 code",
        ),
        (brand("max_per_ip_per_hour = 0"), "must be at least 1"),
        (
            brand("ratio = 1.5"),
            "verify.fraud.ratio: must be above 0 and at most 1",
        ),
        (brand("grace_secs = 400"), "at least twice grace_secs"),
    ] {
        let e = Config::parse(&text, "x").unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}
