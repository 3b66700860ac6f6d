use super::*;

const EXAMPLE: &str = include_str!("../../../../deploy/otpgw.toml");

#[test]
fn example_config_is_valid() {
    let c = Config::parse(EXAMPLE, "deploy/otpgw.toml").unwrap();
    assert_eq!(c.brands.len(), 1);
    assert_eq!(c.carrier_configs()[0].binds, 2);
    assert_eq!(
        c.routes().carriers_for("demo", "447700900123"),
        Some(&["sim".to_string()][..])
    );
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
fn semantic_problems_name_their_fields() {
    let bad = EXAMPLE
        .replace("binds = 2", "binds = 0")
        .replace("password = \"demo\"", "password = \"much-too-long\"");
    let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
    assert!(e.contains("carrier[0].binds = 0"), "{e}");
    assert!(e.contains("brand[0].password"), "{e}");
    assert!(
        !e.contains("much-too-long"),
        "a password must never be echoed: {e}"
    );
}
