//! One ACL user as Redis 7.0 describes it, and `ACL SETUSER`'s rules.
//!
//! A user is kept as the rules that describe it, normalised, not as a
//! bitmap: its `ACL LIST` line is what the metadata record stores, what
//! `ACL LIST` and `ACL GETUSER` show, and what is parsed back on every
//! node. Permissions are compiled from it (`perm.rs`) wherever it lands.
//!
//! The command rules are kept in the order they were given, after the
//! `+@all`/`-@all` they start from, with a rule for the same command or
//! category replacing the earlier one (as Redis 7.2 shows them; 7.0
//! derives a shorter list from its bitmap with a heuristic, in an order
//! that changes with each process). The bitmap they compile to is the one
//! Redis would build from the same rules.
//!
//! Not supported: selectors (`(...)` rules, new in Redis 7.0), refused
//! with a reason; pub/sub channels are kept and shown (`&pattern`) but
//! ringkv has no pub/sub to check them against.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::perm::universe;

/// May read the keys of a pattern.
pub const READ: u8 = 1;
/// May write them.
pub const WRITE: u8 = 2;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Its name (any bytes but whitespace and NUL).
    pub name: Bytes,
    /// `on`: it may authenticate.
    pub enabled: bool,
    /// `nopass`: any password authenticates it.
    pub nopass: bool,
    /// `sanitize-payload` (true) or `skip-sanitize-payload` (false).
    pub sanitize: Option<bool>,
    /// SHA-256 of each password, 64 lower-case hex digits, in the order
    /// added.
    pub passwords: Vec<String>,
    /// Whether the command rules start from `+@all` (else `-@all`).
    pub all_commands: bool,
    /// The command rules after that, lower-cased: `+@read`, `-flushall`,
    /// `+config|get`, `+select|0`.
    pub command_rules: Vec<String>,
    /// `allkeys` / `~*`.
    pub all_keys: bool,
    /// Key patterns and what they allow (`READ`, `WRITE`).
    pub keys: Vec<(Bytes, u8)>,
    /// `allchannels` / `&*`.
    pub all_channels: bool,
    /// Channel patterns.
    pub channels: Vec<Bytes>,
}

/// Redis's reasons for a rule it refuses.
const SYNTAX: &str = "Syntax error";
const UNKNOWN: &str = "Unknown command or category name in ACL";
const AFTER_ALLKEYS: &str = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns";
const AFTER_ALLCHANNELS: &str = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels";
const NO_SUCH_PASSWORD: &str = "The password you are trying to remove from the user does not exist";
const BAD_HASH: &str = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
const SUB_FIRST_ARG: &str = "Allowing first-arg of a subcommand is not supported";

/// SHA-256 of `password`, as `#` rules and `ACL GETUSER` show it.
pub fn hash_password(password: &[u8]) -> String {
    hex::encode(Sha256::digest(password))
}

impl User {
    /// A user as `ACL SETUSER` creates one: off, no passwords, no
    /// commands, keys or channels.
    pub fn new(name: Bytes) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            all_commands: false,
            command_rules: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// The default user as a node without a record of it starts:
    /// `on nopass ~* &* +@all`, or with `requirepass`'s password.
    pub fn default_user(requirepass: Option<&str>) -> User {
        let mut u = User::new(Bytes::from_static(b"default"));
        u.enabled = true;
        u.all_commands = true;
        u.all_keys = true;
        u.all_channels = true;
        match requirepass {
            Some(p) => u.passwords.push(hash_password(p.as_bytes())),
            None => u.nopass = true,
        }
        u
    }

    /// Whether `password` authenticates this user.
    pub fn password_ok(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = hash_password(password);
        // Compared as digests: the time taken says nothing of the password.
        self.passwords
            .iter()
            .any(|p| crate::auth::password_matches(p.as_bytes(), given.as_bytes()))
    }

    /// Applies `rules` in order to a copy; all or nothing. The error is
    /// Redis's reply text for the first rule refused.
    pub fn with_rules(&self, rules: &[Bytes]) -> Result<User, String> {
        let mut u = self.clone();
        for rule in rules {
            if let Err(why) = u.apply(rule) {
                let shown = String::from_utf8_lossy(rule).replace(['\r', '\n'], " ");
                return Err(format!("Error in ACL SETUSER modifier '{shown}': {why}"));
            }
        }
        Ok(u)
    }

    /// Applies one rule.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), &'static str> {
        let lower = String::from_utf8_lossy(rule).to_ascii_lowercase();
        match lower.as_str() {
            "" => {}
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "skip-sanitize-payload" => self.sanitize = Some(false),
            "sanitize-payload" => self.sanitize = Some(true),
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "reset" => {
                let name = self.name.clone();
                *self = User::new(name);
                self.sanitize = Some(true);
            }
            "clearselectors" => {}
            "allkeys" | "~*" => {
                self.all_keys = true;
                self.keys.clear();
            }
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" | "&*" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" | "+@all" => {
                self.all_commands = true;
                self.command_rules.clear();
            }
            "nocommands" | "-@all" => {
                self.all_commands = false;
                self.command_rules.clear();
            }
            _ => return self.apply_other(rule, &lower),
        }
        Ok(())
    }

    fn apply_other(&mut self, rule: &[u8], lower: &str) -> Result<(), &'static str> {
        let rest = &rule[1..];
        match rule[0] {
            b'>' => self.add_password(hash_password(rest)),
            b'#' => self.add_password(checked_hash(rest)?),
            b'<' => self.remove_password(&hash_password(rest))?,
            b'!' => self.remove_password(&checked_hash(rest)?)?,
            b'~' => self.add_key_pattern(rest, READ | WRITE)?,
            b'%' => {
                if self.all_keys {
                    return Err(AFTER_ALLKEYS);
                }
                let tilde = rest.iter().position(|&b| b == b'~');
                let (flags, pattern) = match tilde {
                    Some(at) => (&rest[..at], &rest[at + 1..]),
                    // Redis takes `%R` with no `~` as the empty pattern.
                    None => (rest, &b""[..]),
                };
                let mut perms = 0;
                for f in flags {
                    let bit = match f.to_ascii_uppercase() {
                        b'R' => READ,
                        b'W' => WRITE,
                        _ => return Err(SYNTAX),
                    };
                    if perms & bit != 0 {
                        return Err(SYNTAX);
                    }
                    perms |= bit;
                }
                if perms == 0 {
                    return Err(SYNTAX);
                }
                self.add_key_pattern(pattern, perms)?;
            }
            b'&' => {
                if self.all_channels {
                    return Err(AFTER_ALLCHANNELS);
                }
                if rest.iter().any(|b| is_space(*b) || *b == 0) {
                    return Err(SYNTAX);
                }
                if !self.channels.iter().any(|c| c[..] == *rest) {
                    self.channels.push(Bytes::copy_from_slice(rest));
                }
            }
            b'+' | b'-' => self.add_command_rule(lower)?,
            b'(' => {
                return Err("ringkv does not support ACL selectors; give the user one set of rules")
            }
            _ => return Err(SYNTAX),
        }
        Ok(())
    }

    fn add_password(&mut self, hash: String) {
        self.nopass = false;
        if !self.passwords.contains(&hash) {
            self.passwords.push(hash);
        }
    }

    fn remove_password(&mut self, hash: &str) -> Result<(), &'static str> {
        let before = self.passwords.len();
        self.passwords.retain(|p| p != hash);
        if self.passwords.len() == before {
            return Err(NO_SUCH_PASSWORD);
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, pattern: &[u8], perms: u8) -> Result<(), &'static str> {
        if self.all_keys {
            return Err(AFTER_ALLKEYS);
        }
        if pattern.iter().any(|b| is_space(*b) || *b == 0) {
            return Err(SYNTAX);
        }
        match self.keys.iter_mut().find(|(p, _)| p[..] == *pattern) {
            Some((_, p)) => *p |= perms,
            None => self.keys.push((Bytes::copy_from_slice(pattern), perms)),
        }
        Ok(())
    }

    /// `+name`, `-name`, `+@cat`, `-@cat`, `+cmd|sub`, `+cmd|firstarg`.
    fn add_command_rule(&mut self, lower: &str) -> Result<(), &'static str> {
        let (sign, what) = lower.split_at(1);
        let u = universe();
        if let Some(cat) = what.strip_prefix('@') {
            u.category(cat).ok_or(UNKNOWN)?;
        } else if let Some((cmd, arg)) = what.rsplit_once('|') {
            if arg.is_empty() {
                return Err(SYNTAX);
            }
            if cmd.contains('|') {
                // `+config|get|x`: Redis splits at the last `|`; only
                // `+` may name a first argument.
                return Err(if sign == "+" && u.knows(cmd) {
                    SUB_FIRST_ARG
                } else {
                    UNKNOWN
                });
            }
            if u.is_container(cmd) {
                if !u.knows(what) {
                    return Err(UNKNOWN);
                }
            } else if !u.knows(cmd) || sign == "-" {
                // A first-arg may only be allowed, never taken away.
                return Err(UNKNOWN);
            }
        } else if !u.knows(what) {
            return Err(UNKNOWN);
        }
        // A later rule for the same name replaces the earlier one; one for
        // a container command replaces those of its subcommands too.
        let prefix = format!("{what}|");
        self.command_rules.retain(|r| {
            r[1..] != *what && !(what.find('|').is_none() && r[1..].starts_with(&prefix))
        });
        self.command_rules.push(lower.to_string());
        Ok(())
    }

    /// The command rules as `ACL GETUSER` and `ACL LIST` show them.
    pub fn describe_commands(&self) -> String {
        let mut out = String::from(if self.all_commands { "+@all" } else { "-@all" });
        for r in &self.command_rules {
            out.push(' ');
            out.push_str(r);
        }
        out
    }

    /// The key patterns as `ACL GETUSER` shows them.
    pub fn describe_keys(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        let shown: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|(p, perms)| key_rule(p, *perms))
            .collect();
        shown.join(&b' ')
    }

    /// The channel patterns as `ACL GETUSER` shows them.
    pub fn describe_channels(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        let shown: Vec<Vec<u8>> = self
            .channels
            .iter()
            .map(|c| [&b"&"[..], c].concat())
            .collect();
        shown.join(&b' ')
    }

    /// The flags as `ACL GETUSER` lists them.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize {
            Some(false) => flags.push("skip-sanitize-payload"),
            Some(true) => flags.push("sanitize-payload"),
            None => {}
        }
        flags
    }

    /// The user's `ACL LIST` line: `user NAME on #hash ~k:* resetchannels
    /// -@all +get`. Applying its rules to a new user gives this user back.
    pub fn line(&self) -> Vec<u8> {
        let mut out = b"user ".to_vec();
        out.extend_from_slice(&self.name);
        for f in self.flags() {
            out.push(b' ');
            out.extend_from_slice(f.as_bytes());
        }
        for p in &self.passwords {
            out.extend_from_slice(format!(" #{p}").as_bytes());
        }
        if self.all_keys {
            out.extend_from_slice(b" ~*");
        } else {
            for (p, perms) in &self.keys {
                out.push(b' ');
                out.extend_from_slice(&key_rule(p, *perms));
            }
        }
        if self.all_channels {
            out.extend_from_slice(b" &*");
        } else {
            out.extend_from_slice(b" resetchannels");
            for c in &self.channels {
                out.extend_from_slice(b" &");
                out.extend_from_slice(c);
            }
        }
        out.push(b' ');
        out.extend_from_slice(self.describe_commands().as_bytes());
        out
    }

    /// The user an `ACL LIST` line describes.
    pub fn from_line(line: &[u8]) -> Result<User, String> {
        let mut words = line.split(|&b| b == b' ');
        if words.next() != Some(&b"user"[..]) {
            return Err("an ACL line must start with `user`".into());
        }
        // Redis accepts an empty name: its line is `user  on ...`.
        let name = words.next().ok_or("no user name")?;
        let rules: Vec<Bytes> = words.map(Bytes::copy_from_slice).collect();
        User::new(Bytes::copy_from_slice(name)).with_rules(&rules)
    }
}

fn key_rule(pattern: &[u8], perms: u8) -> Vec<u8> {
    let prefix: &[u8] = match perms {
        READ => b"%R~",
        WRITE => b"%W~",
        _ => b"~",
    };
    [prefix, pattern].concat()
}

fn checked_hash(hash: &[u8]) -> Result<String, &'static str> {
    if hash.len() != 64
        || !hash
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err(BAD_HASH);
    }
    Ok(String::from_utf8_lossy(hash).into_owned())
}

/// Whether `name` may name a user: no whitespace or NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.iter().any(|b| is_space(*b) || *b == 0)
}

/// C's `isspace`, as Redis tests names and patterns with it (Rust's
/// `is_ascii_whitespace` leaves out the vertical tab).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | 0x09..=0x0d)
}
