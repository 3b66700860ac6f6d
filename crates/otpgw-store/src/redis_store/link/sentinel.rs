//! A primary named by Redis Sentinels (see the module docs of [`super`]): found
//! through them at the start, then followed by a task that asks them again every
//! second, on each Sentinel's `+switch-master` and on a failed command.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use otpgw_core::store::StoreError;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

use super::{Conn, Current, Inner, Link, Opener, manager, node_of};
use crate::redis_store::err;

/// How often the follower asks the Sentinels even when nothing happened.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Least time between two questions (a burst of failed commands asks once).
const FOLLOW_GAP: Duration = Duration::from_millis(100);

/// A primary named by Redis Sentinels.
#[derive(Clone, Default)]
pub struct Sentinels {
    /// `host:port` of each Sentinel.
    pub addrs: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    pub master: String,
    /// The Sentinels' password (`requirepass` in sentinel.conf), if any.
    pub sentinel_password: Option<String>,
    /// The primary's and replicas' password (`requirepass`), if any.
    pub password: Option<String>,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("addrs", &self.addrs)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// Connect to the primary the Sentinels name, and follow it.
pub(super) async fn connect(s: &Sentinels, timeout: Duration) -> Result<Link, StoreError> {
    let mut sentinel = sentinel_of(s)?;
    let node = node_info(s);
    let client = tokio::time::timeout(timeout, sentinel.async_master_for(&s.master, Some(&node)))
        .await
        .map_err(|_| StoreError::Unavailable("asking the redis sentinels timed out".into()))?
        .map_err(|e| {
            err(format!(
                "no primary named {:?} from the sentinels: {e}",
                s.master
            ))
        })?;
    let conn = manager(&client, timeout).await?;
    let addr = client.get_connection_info().addr.to_string();
    tracing::info!(primary = %addr, master = %s.master, "redis primary found through the sentinels");
    let now = Current {
        client: Opener::One(client),
        conn: Conn::One(conn),
        addr,
    };
    let inner = Inner::link(now, 0, true);
    for a in &s.addrs {
        tokio::spawn(listen(
            sentinel_info(a, s),
            s.master.clone(),
            Arc::downgrade(&inner),
        ));
    }
    tokio::spawn(follow(
        sentinel,
        s.clone(),
        node,
        timeout,
        Arc::downgrade(&inner),
    ));
    Ok(Link { inner })
}

fn sentinel_info(addr: &str, s: &Sentinels) -> ConnectionInfo {
    node_of(addr, 26379, s.sentinel_password.clone())
}

fn sentinel_of(s: &Sentinels) -> Result<Sentinel, StoreError> {
    Sentinel::build(s.addrs.iter().map(|a| sentinel_info(a, s)).collect()).map_err(err)
}

fn node_info(s: &Sentinels) -> SentinelNodeConnectionInfo {
    SentinelNodeConnectionInfo {
        tls_mode: None,
        redis_connection_info: Some(RedisConnectionInfo {
            password: s.password.clone(),
            ..Default::default()
        }),
    }
}

/// Ask the Sentinels for the primary now and then (see the module docs), and move
/// the link when they name another. Ends when no link is left.
async fn follow(
    mut sentinel: Sentinel,
    s: Sentinels,
    node: SentinelNodeConnectionInfo,
    timeout: Duration,
    link: Weak<Inner>,
) {
    loop {
        let Some(inner) = link.upgrade() else { return };
        let _ = tokio::time::timeout(FOLLOW_EVERY, inner.doubt.notified()).await;
        let hint = inner.announced.lock().take();
        let asked = match hint.and_then(|(host, port)| announced(host, port, &s)) {
            // The address a Sentinel announced, if it says it is a primary: the
            // other Sentinels may take seconds more to agree.
            Some(c) => match tokio::time::timeout(timeout, is_primary(&c)).await {
                Ok(true) => Ok(Ok(c)),
                _ => {
                    tokio::time::timeout(timeout, sentinel.async_master_for(&s.master, Some(&node)))
                        .await
                }
            },
            None => {
                tokio::time::timeout(timeout, sentinel.async_master_for(&s.master, Some(&node)))
                    .await
            }
        };
        let client = match asked {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, master = %s.master, "the sentinels name no reachable primary");
                tokio::time::sleep(FOLLOW_GAP).await;
                continue;
            }
            Err(_) => {
                tracing::warn!(master = %s.master, "asking the sentinels for the primary timed out");
                continue;
            }
        };
        let addr = client.get_connection_info().addr.to_string();
        if addr != inner.now.read().addr {
            match manager(&client, timeout).await {
                Ok(conn) => {
                    let old = std::mem::replace(
                        &mut *inner.now.write(),
                        Current {
                            client: Opener::One(client),
                            conn: Conn::One(conn),
                            addr: addr.clone(),
                        },
                    );
                    metrics::counter!("otpgw_store_redis_failovers_total").increment(1);
                    tracing::warn!(from = %old.addr, to = %addr, master = %s.master, "redis primary changed: every connection moves to the new one");
                }
                Err(e) => {
                    tracing::warn!(error = %e, primary = %addr, "cannot connect to the new redis primary yet")
                }
            }
        }
        drop(inner);
        tokio::time::sleep(FOLLOW_GAP).await;
    }
}

/// Follow one Sentinel's `+switch-master` channel ("NAME OLD-IP OLD-PORT NEW-IP
/// NEW-PORT"): a switch of `master` makes the follower try the announced primary
/// at once. Reconnects every second while the Sentinel is away.
async fn listen(info: ConnectionInfo, master: String, link: Weak<Inner>) {
    loop {
        if link.strong_count() == 0 {
            return;
        }
        let sub = async {
            let client = redis::Client::open(info.clone())?;
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe("+switch-master").await?;
            let mut msgs = ps.on_message();
            while let Some(m) = msgs.next().await {
                let Some(inner) = link.upgrade() else { break };
                let text: String = m.get_payload().unwrap_or_default();
                if let Some(to) = switched_to(&text, &master) {
                    *inner.announced.lock() = Some(to);
                }
                inner.doubt.notify_one();
            }
            Ok::<_, redis::RedisError>(())
        };
        if let Err(e) = sub.await {
            tracing::debug!(error = %e, sentinel = %info.addr, "sentinel channel lost");
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The new primary of a `+switch-master` message about `master`.
fn switched_to(text: &str, master: &str) -> Option<(String, u16)> {
    let f: Vec<&str> = text.split_whitespace().collect();
    match f.as_slice() {
        [name, _, _, ip, port] if *name == master => Some(((*ip).to_string(), port.parse().ok()?)),
        _ => None,
    }
}

/// A client of an announced primary (with the servers' password).
fn announced(host: String, port: u16, s: &Sentinels) -> Option<redis::Client> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo {
            password: s.password.clone(),
            ..Default::default()
        },
    };
    redis::Client::open(info).ok()
}

/// Whether the server says it is a primary (`ROLE`).
async fn is_primary(c: &redis::Client) -> bool {
    let Ok(mut conn) = c.get_multiplexed_async_connection().await else {
        return false;
    };
    let role: redis::RedisResult<Vec<redis::Value>> =
        redis::cmd("ROLE").query_async(&mut conn).await;
    matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r.as_slice() == b"master")
}

#[cfg(test)]
mod tests {
    use super::switched_to;

    #[test]
    fn a_switch_names_the_new_primary_of_its_master() {
        assert_eq!(
            switched_to("otpgw 127.0.0.1 6379 10.0.0.7 6380", "otpgw"),
            Some(("10.0.0.7".into(), 6380))
        );
        assert_eq!(
            switched_to("other 127.0.0.1 6379 10.0.0.7 6380", "otpgw"),
            None
        );
        assert_eq!(switched_to("otpgw 127.0.0.1 6379 10.0.0.7", "otpgw"), None);
        assert_eq!(switched_to("otpgw a b c notaport", "otpgw"), None);
    }
}
