//! The names of the backend's keys, under the configured prefix (see the
//! module docs of [`super`]).

use super::RedisConfig;

impl RedisConfig {
    pub(super) fn kv(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.prefix)
    }
    pub(super) fn status(&self, id: u64) -> String {
        format!("{}:st:{id}", self.prefix)
    }
    pub(super) fn counter(&self, key: &str) -> String {
        format!("{}:cnt:{key}", self.prefix)
    }
    pub(super) fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }
    pub(super) fn receipts_of(&self, node: &str) -> String {
        format!("{}:receipts:{node}", self.prefix)
    }
    pub(super) fn rcpt(&self) -> String {
        format!("{}:rcpt", self.prefix)
    }
    pub(super) fn inbox(&self, node: &str) -> String {
        format!("{}:inbox:{node}", self.prefix)
    }
    pub(super) fn bound(&self, brand: &str) -> String {
        format!("{}:bound:{brand}", self.prefix)
    }
    pub(super) fn stream(&self) -> String {
        format!("{}:msgs", self.prefix)
    }
    pub(super) fn state(&self) -> String {
        format!("{}:state", self.prefix)
    }
    pub(super) fn receipts(&self) -> String {
        format!("{}:receipts:{}", self.prefix, self.node)
    }
}
