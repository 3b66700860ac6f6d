//! Secrets in the configuration file: every secret field `NAME` (a carrier's
//! `password`, `[verify] secret`, a brand's `webhook_secret`, `[ops] admin_token`)
//! may instead be given as `NAME_env` (the environment variable holding it) or
//! `NAME_file` (a file holding it, such as a mounted Kubernetes secret or a systemd
//! credential; one trailing newline is dropped). Exactly one of the three; the
//! check names the variable or file that is missing. The `Debug` of the config
//! types never prints a secret's value.

use std::path::{Path, PathBuf};

/// The three ways of giving one secret.
#[derive(Clone, Copy)]
pub struct SecretSource<'a> {
    /// The field's name, for messages.
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
}

impl SecretSource<'_> {
    /// The secret (`None` when none of the three is set), or why it cannot be had.
    pub fn resolve(&self) -> Result<Option<String>, String> {
        let n = self.name;
        match (self.value, self.env, self.file) {
            (None, None, None) => Ok(None),
            (Some(v), None, None) => Ok(Some(v.to_string())),
            (None, Some(var), None) => std::env::var(var)
                .map(Some)
                .map_err(|_| format!("{n}_env: the environment variable {var} is not set")),
            (None, None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| {
                    let s = s.strip_suffix('\n').unwrap_or(&s);
                    Some(s.strip_suffix('\r').unwrap_or(s).to_string())
                })
                .map_err(|e| format!("{n}_file: cannot read {}: {e}", f.display())),
            _ => Err(format!("set exactly one of {n}, {n}_env and {n}_file")),
        }
    }
}

/// A shorthand for [`SecretSource`].
pub fn source<'a>(
    name: &'a str,
    value: &'a Option<String>,
    env: &'a Option<String>,
    file: &'a Option<PathBuf>,
) -> SecretSource<'a> {
    SecretSource {
        name,
        value: value.as_deref(),
        env: env.as_deref(),
        file: file.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_three() {
        let dir = std::env::temp_dir().join(format!("otpgw-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let none: Option<String> = None;
        let path = Some(f.clone());
        let no_path: Option<PathBuf> = None;
        let v = Some("inline".to_string());
        assert_eq!(
            source("password", &v, &none, &no_path).resolve(),
            Ok(Some("inline".into()))
        );
        assert_eq!(
            source("password", &none, &none, &path).resolve(),
            Ok(Some("s3cret".into())),
            "one trailing newline dropped"
        );
        assert_eq!(
            source("password", &none, &none, &no_path).resolve(),
            Ok(None)
        );
        let missing = Some("OTPGW_TEST_SURELY_UNSET_VARIABLE".to_string());
        let e = source("password", &none, &missing, &no_path)
            .resolve()
            .unwrap_err();
        assert!(e.contains("OTPGW_TEST_SURELY_UNSET_VARIABLE"), "{e}");
        let gone = Some(dir.join("nope"));
        let e = source("password", &none, &none, &gone)
            .resolve()
            .unwrap_err();
        assert!(e.contains("password_file") && e.contains("nope"), "{e}");
        let e = source("password", &v, &none, &path).resolve().unwrap_err();
        assert!(
            e.contains("exactly one of password, password_env and password_file"),
            "{e}"
        );
    }
}
