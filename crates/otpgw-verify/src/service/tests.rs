use super::*;
use otpgw_core::message::IdGen;
use otpgw_core::outbox::Outbox;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::{Dispatcher, Routes};
use otpgw_store::MemoryStore;

struct Rig {
    v: Verifier,
    brand: BrandConfig,
    dispatcher: Arc<Dispatcher>,
}

fn rig(cfg: impl FnOnce(&mut VerifyConfig)) -> Rig {
    rig_on(Arc::new(MemoryStore::new()), cfg)
}

fn rig_on(store: Arc<dyn Store>, cfg: impl FnOnce(&mut VerifyConfig)) -> Rig {
    let tracker = Arc::new(Tracker::new(store, Arc::new(Outbox::new(100))));
    let dispatcher = Arc::new(Dispatcher::new(
        Routes::new(vec!["sim".into()]),
        &["sim".into()],
        10_000,
    ));
    let acceptor = Arc::new(Acceptor::new(
        otpgw_accept::Brands::default(),
        dispatcher.clone(),
        tracker,
        IdGen::starting_at(1),
        otpgw_core::public_id::IdCipher::new([7; 16]),
    ));
    let mut c = VerifyConfig::new(Secret::new(vec![3u8; 32]).unwrap());
    cfg(&mut c);
    Rig {
        v: Verifier::new(c, acceptor),
        brand: BrandConfig::new("bank", "x"),
        dispatcher,
    }
}

impl Rig {
    /// The code of the last message queued to the carrier (what the phone gets).
    fn last_code(&self) -> String {
        let q = self.dispatcher.queue("sim").unwrap();
        let (mut out, mut exp) = (Vec::new(), Vec::new());
        q.try_pop(10_000, 0, &mut out, &mut exp);
        let m = out.last().expect("a code was queued");
        assert_eq!(m.class, Class::Otp);
        let otpgw_core::Body::Sms(b) = &m.body;
        let text = otpgw_proto::gsm::decode_gsm(b.text());
        text.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() >= 4)
            .unwrap()
            .to_string()
    }
    async fn create(&self, to: &str, now: u64) -> Result<View, VerifyError> {
        let req = CreateRequest {
            to: to.into(),
            ..Default::default()
        };
        self.v.create(&self.brand, req, now).await
    }
}

const T0: u64 = 1_800_000_000_000;

#[tokio::test]
async fn the_code_sent_approves_once() {
    let r = rig(|_| {});
    let v = r.create("+447400900001", T0).await.unwrap();
    assert_eq!((v.status, v.expires_ms), ("pending", T0 + 300_000));
    let code = r.last_code();
    assert_eq!(code.len(), 6);
    let (o, view) = r.v.check(&r.brand, &v.id, &code, T0 + 1_000).await.unwrap();
    assert_eq!((o, view.status), (Outcome::Approved, "approved"));
    let (o, _) = r.v.check(&r.brand, &v.id, &code, T0 + 2_000).await.unwrap();
    assert_eq!(o, Outcome::Denied, "a code is used once");
}

#[tokio::test]
async fn wrong_codes_lock_and_expiry_expires() {
    let r = rig(|_| {});
    let v = r.create("+447400900002", T0).await.unwrap();
    let code = r.last_code();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        let (o, _) = r.v.check(&r.brand, &v.id, wrong, T0 + 1).await.unwrap();
        assert_eq!(o, Outcome::Denied);
    }
    let (o, view) = r.v.check(&r.brand, &v.id, &code, T0 + 2).await.unwrap();
    assert_eq!((o, view.status), (Outcome::MaxAttempts, "max_attempts"));

    let v = r.create("+447400900003", T0).await.unwrap();
    let code = r.last_code();
    let (o, view) =
        r.v.check(&r.brand, &v.id, &code, T0 + 300_000)
            .await
            .unwrap();
    assert_eq!((o, view.status), (Outcome::Expired, "expired"));
    // Malformed codes count as wrong ones.
    let v = r.create("+447400900004", T0).await.unwrap();
    let (o, view) = r.v.check(&r.brand, &v.id, "12ab56", T0 + 1).await.unwrap();
    assert_eq!((o, view.checks), (Outcome::Denied, 1));
}

/// On the embedded store (a writer thread: the checks' compare-and-sets really
/// race), eight concurrent checks with the right code approve exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_checks_approve_exactly_once() {
    let dir = std::env::temp_dir().join(format!("otpgw-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store =
        otpgw_store::EmbeddedStore::open(otpgw_store::EmbeddedConfig::new(dir.join("s.redb")))
            .unwrap();
    let r = Arc::new(rig_on(Arc::new(store), |_| {}));
    let v = r.create("+447400900005", T0).await.unwrap();
    let code = r.last_code();
    let checks = (0..8).map(|_| r.v.check(&r.brand, &v.id, &code, T0 + 10));
    let outcomes: Vec<_> = futures_join(checks).await;
    let approved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((Outcome::Approved, _))))
        .count();
    assert_eq!(approved, 1, "{outcomes:?}");
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.collect();
    let mut out = Vec::new();
    // Poll them together: each check's store calls interleave with the others'.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (f, d) in pinned.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *d = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for d in done {
        out.extend(d);
    }
    out
}

#[tokio::test]
async fn a_new_verification_supersedes_and_resends_are_capped() {
    let r = rig(|_| {});
    let first = r.create("+447400900006", T0).await.unwrap();
    let first_code = r.last_code();
    let second = r.create("+447400900006", T0 + 1_000).await.unwrap();
    let (o, _) =
        r.v.check(&r.brand, &first.id, &first_code, T0 + 2_000)
            .await
            .unwrap();
    assert_eq!(o, Outcome::Superseded);
    assert_eq!(
        r.v.resend(&r.brand, &second.id, T0 + 10_000).await,
        Err(VerifyError::ResendTooSoon(21_000))
    );
    let mut now = T0 + 31_000;
    for sends in 2..=4 {
        let v = r.v.resend(&r.brand, &second.id, now).await.unwrap();
        assert_eq!(v.sends, sends);
        now += 30_000;
    }
    assert_eq!(
        r.v.resend(&r.brand, &second.id, now).await,
        Err(VerifyError::ResendLimit)
    );
    // Only the latest code works.
    let latest = r.last_code();
    let (o, _) = r.v.check(&r.brand, &second.id, &latest, now).await.unwrap();
    assert_eq!(o, Outcome::Approved);
}

#[tokio::test]
async fn caps_per_number_and_prefix_and_bad_requests() {
    let r = rig(|c| {
        c.per_number_per_hour = 2;
        c.per_prefix_per_hour = 3;
    });
    assert!(r.create("+447400900007", T0).await.is_ok());
    assert!(r.create("+447400900007", T0).await.is_ok());
    assert_eq!(
        r.create("+447400900007", T0).await,
        Err(VerifyError::NumberLimit(3_600_000))
    );
    assert!(r.create("+447400900008", T0).await.is_ok());
    assert_eq!(
        r.create("+447400900009", T0).await,
        Err(VerifyError::PrefixLimit(3_600_000)),
        "the fourth to 447400 within the hour"
    );
    assert!(r.create("+447400900009", T0 + 3_600_000).await.is_ok());
    for (req, field) in [
        (
            CreateRequest {
                to: "447400900010".into(),
                ..Default::default()
            },
            "to",
        ),
        (
            CreateRequest {
                to: "+447400900010".into(),
                code_length: Some(3),
                ..Default::default()
            },
            "code_length",
        ),
        (
            CreateRequest {
                to: "+447400900010".into(),
                ttl_secs: Some(901),
                ..Default::default()
            },
            "ttl_secs",
        ),
        (
            CreateRequest {
                to: "+447400900010".into(),
                channel: Some("voice".into()),
                ..Default::default()
            },
            "channel",
        ),
        (
            CreateRequest {
                to: "+447400900010".into(),
                template: Some("no code here".into()),
                ..Default::default()
            },
            "template",
        ),
    ] {
        match r.v.create(&r.brand, req, T0).await {
            Err(VerifyError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn another_brands_verification_is_not_found() {
    let r = rig(|_| {});
    let v = r.create("+447400900011", T0).await.unwrap();
    let shop = BrandConfig::new("shop", "x");
    assert_eq!(
        r.v.check(&shop, &v.id, "123456", T0 + 1).await,
        Err(VerifyError::NotFound)
    );
    assert_eq!(r.v.get(&shop, &v.id, T0).await, Err(VerifyError::NotFound));
    assert_eq!(
        r.v.get(&r.brand, "0123456789abcdef0123456789abcdef", T0)
            .await,
        Err(VerifyError::NotFound)
    );
    assert_eq!(
        r.v.get(&r.brand, "../../etc", T0).await,
        Err(VerifyError::NotFound)
    );
}

/// PSD2 dynamic linking: the code authorises the transaction it was shown with.
#[tokio::test]
async fn a_code_bound_to_a_transaction_approves_only_that_transaction() {
    let r = rig(|_| {});
    let tx = Transaction::new("25.00", "EUR", "ACME Ltd").unwrap();
    let req = CreateRequest {
        to: "+447400900077".into(),
        template: Some("Pay {amount} {currency} to {payee}? Code {code}".into()),
        transaction: Some(tx.clone()),
        ..Default::default()
    };
    let v = r.v.create(&r.brand, req, T0).await.unwrap();
    let code = r.last_code();
    let other = Transaction::new("250.00", "EUR", "ACME Ltd").unwrap();
    let payee = Transaction::new("25.00", "EUR", "EVIL Ltd").unwrap();
    for (given, what) in [
        (Some(&other), "amount"),
        (Some(&payee), "payee"),
        (None, "none"),
    ] {
        let (o, view, mismatch) =
            r.v.check_for(&r.brand, &v.id, &code, given, T0 + 1)
                .await
                .unwrap();
        assert_eq!((o, mismatch), (Outcome::Denied, true), "{what}");
        assert_eq!(
            view.status, "pending",
            "{what}: a wrong attempt, not the end"
        );
    }
    let respelled = Transaction::new("25", "eur", " ACME  Ltd").unwrap();
    let (o, view, mismatch) =
        r.v.check_for(&r.brand, &v.id, &code, Some(&respelled), T0 + 2)
            .await
            .unwrap();
    assert_eq!((o, mismatch, view.checks), (Outcome::Approved, false, 4));
    // A verification without one: a check that brings one is denied too.
    let plain = r.create("+447400900078", T0).await.unwrap();
    let code = r.last_code();
    let (o, _, mismatch) =
        r.v.check_for(&r.brand, &plain.id, &code, Some(&tx), T0 + 1)
            .await
            .unwrap();
    assert_eq!((o, mismatch), (Outcome::Denied, true));
}

#[test]
fn the_text_shows_the_transaction() {
    let tx = Transaction::new("25.00", "EUR", "ACME {code}").unwrap();
    assert_eq!(
        render(
            "{code}: {amount} {currency} to {payee}",
            "123456",
            60_000,
            Some(&tx)
        ),
        "123456: 25.00 EUR to ACME {code}",
        "a payee cannot pull the code in twice"
    );
}

/// A rig whose brand has the fraud policy `f`.
fn rig_fraud(f: impl FnOnce(&mut otpgw_accept::fraud::BrandFraud)) -> Rig {
    let mut r = rig(|c| c.per_prefix_per_hour = 100_000);
    let mut policy = otpgw_accept::fraud::BrandFraud::default();
    f(&mut policy);
    r.brand.fraud = Arc::new(policy);
    r
}

fn refusal(r: Result<View, VerifyError>) -> &'static str {
    match r {
        Err(VerifyError::NumberRefused(n)) => n.code(),
        Err(VerifyError::Fraud { reason, .. }) => reason,
        Err(e) => panic!("{e}"),
        Ok(_) => "created",
    }
}

#[tokio::test]
async fn numbers_are_checked_against_their_plan_type_and_country() {
    let r = rig_fraud(|f| f.allowed_countries = vec!["GB".into(), "FR".into()]);
    for (to, expected) in [
        ("+447400900001", "created"),
        ("+33612345678", "created"),
        ("+4420712345", "invalid_number"),
        ("+447700900123", "invalid_number"),
        ("+449098790000", "number_type_refused"),
        ("+442079460000", "number_type_refused"),
        ("+4915112345678", "country_refused"),
    ] {
        assert_eq!(refusal(r.create(to, T0).await), expected, "{to}");
    }
}

#[tokio::test]
async fn caps_per_country_address_network_and_device() {
    let r = rig_fraud(|f| {
        f.per_country_per_day.insert("FR".into(), 2);
        f.per_ip_per_hour = 2;
        f.per_subnet_per_hour = 2;
        f.per_device_per_hour = 1;
    });
    let create = |to: &str, ip: Option<&str>, device: Option<&str>, now| {
        let req = CreateRequest {
            to: to.into(),
            signals: Signals {
                ip: ip.map(|s| s.parse().unwrap()),
                device_id: device.map(str::to_string),
            },
            ..Default::default()
        };
        r.v.create(&r.brand, req, now)
    };
    assert_eq!(
        refusal(create("+33612345601", None, None, T0).await),
        "created"
    );
    assert_eq!(
        refusal(create("+33612345602", None, None, T0).await),
        "created"
    );
    assert_eq!(
        refusal(create("+33612345603", None, None, T0).await),
        "country_cap"
    );
    assert_eq!(
        refusal(create("+33612345603", None, None, T0 + 86_400_000).await),
        "created"
    );
    let ip = Some("203.0.113.7");
    assert_eq!(
        refusal(create("+447400900011", ip, None, T0).await),
        "created"
    );
    assert_eq!(
        refusal(create("+447400900012", ip, None, T0).await),
        "created"
    );
    assert_eq!(
        refusal(create("+447400900013", ip, None, T0).await),
        "ip_cap"
    );
    // Another address of the /24: its own cap is fine, the network's is reached.
    let other = Some("203.0.113.8");
    assert_eq!(
        refusal(create("+447400900014", other, None, T0).await),
        "subnet_cap"
    );
    let dev = Some("phone-1");
    assert_eq!(
        refusal(create("+447400900015", None, dev, T0).await),
        "created"
    );
    assert_eq!(
        refusal(create("+447400900016", None, dev, T0).await),
        "device_cap"
    );
}

/// Requests to random numbers of one prefix whose codes nobody types, next to
/// honest ones typed back: the prefix is blocked, the honest ones go on.
async fn pump(r: &Rig) -> (u32, u32) {
    let (mut attack_sent, mut honest_refused) = (0, 0);
    for i in 0..120u64 {
        let now = T0 + i * 1_000;
        let honest = format!("+3361234{:04}", i);
        match r.create(&honest, now).await {
            Ok(v) => {
                let code = r.last_code();
                r.v.check(&r.brand, &v.id, &code, now + 500).await.unwrap();
            }
            Err(_) => honest_refused += 1,
        }
        if r.create(&format!("+4474009{:05}", i * 7), now)
            .await
            .is_ok()
        {
            attack_sent += 1;
        }
    }
    (attack_sent, honest_refused)
}

#[tokio::test]
async fn pumping_one_prefix_is_blocked_and_shadow_mode_only_counts() {
    let r = rig_fraud(|_| {});
    let (sent, refused) = pump(&r).await;
    assert_eq!(refused, 0);
    // 25 judged codes, 15 s of grace and a 5 s bucket, a second apart: about 45.
    assert!((25..=55).contains(&sent), "{sent} codes went to the attack");
    assert_eq!(
        refusal(r.create("+447400912345", T0 + 121_000).await),
        "prefix_blocked"
    );
    let blocks = r.v.guard().blocks(T0 + 121_000);
    assert_eq!((blocks.len(), blocks[0].prefix.as_str()), (1, "447400"));
    let shadow = rig_fraud(|f| f.mode = otpgw_accept::fraud::FraudMode::Shadow);
    let (sent, refused) = pump(&shadow).await;
    assert_eq!((sent, refused), (120, 0), "shadow mode refuses nothing");
    assert_eq!(
        shadow.v.guard().blocks(T0 + 121_000).len(),
        1,
        "but decides"
    );
    let off = rig_fraud(|f| f.mode = otpgw_accept::fraud::FraudMode::Off);
    assert_eq!(pump(&off).await, (120, 0));
    assert!(off.v.guard().blocks(T0 + 121_000).is_empty());
}

#[tokio::test]
async fn a_resend_to_a_blocked_prefix_is_refused() {
    let r = rig_fraud(|_| {});
    // Verifications made before the attack's prefix was blocked...
    let early = r.create("+447400800001", T0).await.unwrap();
    pump(&r).await;
    // ...get no more codes once it is.
    let at = T0 + 121_000;
    let resend = r.v.resend(&r.brand, &early.id, at).await;
    assert!(
        matches!(
            resend,
            Err(VerifyError::Fraud {
                reason: "prefix_blocked",
                ..
            })
        ),
        "{resend:?}"
    );
}
