//! Identity numbers: a mainland resident ID card number is parsed and checked once, then
//! kept only as a keyed hash (to compare) and a masked form (to show). The clear number
//! never reaches the database, a log line, an event or an error message.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A checked 18-character resident ID number (17 digits and an ISO 7064 MOD 11-2 check
/// character, `0`-`9` or `X`). Deliberately not `Serialize` or `Display`: it can only be
/// hashed or masked.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("an ID card number has 18 characters (17 digits then a digit or X); got {0}")]
    Length(usize),
    #[error("an ID card number has digits only, with an optional final X")]
    Character,
    #[error("the ID card number's check character does not match: check it for a mistyped digit")]
    CheckCharacter,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

impl IdNumber {
    pub fn parse(input: &str) -> Result<Self, IdNumberError> {
        let s: String = input.trim().to_ascii_uppercase().chars().filter(|c| *c != ' ').collect();
        let n = s.chars().count();
        if n != 18 {
            return Err(IdNumberError::Length(n));
        }
        let body = &s[..17];
        if !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdNumberError::Character);
        }
        let last = s.as_bytes()[17] as char;
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(IdNumberError::Character);
        }
        let sum: u32 = body.bytes().zip(WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
        if CHECK[(sum % 11) as usize] != last {
            return Err(IdNumberError::CheckCharacter);
        }
        Ok(IdNumber(s))
    }

    /// First 6 and last 4 characters visible: `110101********123X`.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

/// The key ID numbers are hashed with (from configuration, never stored beside them).
#[derive(Clone)]
pub struct IdHasher(Vec<u8>);

impl fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdHasher(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ID hash key must be at least 16 bytes long (got {0}); set APPEALFLOW_ID_HASH_KEY to a long random string")]
pub struct WeakKey(pub usize);

impl IdHasher {
    pub fn new(key: &[u8]) -> Result<Self, WeakKey> {
        if key.len() < 16 {
            return Err(WeakKey(key.len()));
        }
        Ok(IdHasher(key.to_vec()))
    }

    pub fn protect(&self, id: &IdNumber) -> ProtectedId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.0.as_bytes());
        ProtectedId { hash: hex::encode(mac.finalize().into_bytes()), masked: id.masked() }
    }
}

/// What is stored of an ID number: a keyed hash to compare and a masked form to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedId {
    pub hash: String,
    pub masked: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid example number (check character computed by the rule).
    const VALID: &str = "11010519491231002X";

    #[test]
    fn accepts_a_number_with_a_correct_check_character() {
        let id = IdNumber::parse(VALID).unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(IdNumber::parse("11010519491231002x").unwrap(), id);
    }

    #[test]
    fn rejects_typos_and_wrong_shapes() {
        assert_eq!(IdNumber::parse("11010519491231003X"), Err(IdNumberError::CheckCharacter));
        assert_eq!(IdNumber::parse("1101051949"), Err(IdNumberError::Length(10)));
        assert_eq!(IdNumber::parse("1101051949123100AX"), Err(IdNumberError::Character));
    }

    #[test]
    fn debug_output_never_shows_the_number() {
        let id = IdNumber::parse(VALID).unwrap();
        assert!(!format!("{id:?}").contains("19491231"));
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let id = IdNumber::parse(VALID).unwrap();
        let a = IdHasher::new(b"0123456789abcdef-key-a").unwrap().protect(&id);
        let b = IdHasher::new(b"0123456789abcdef-key-b").unwrap().protect(&id);
        assert_ne!(a.hash, b.hash);
        assert_eq!(a, IdHasher::new(b"0123456789abcdef-key-a").unwrap().protect(&id));
        assert!(!a.hash.contains("19491231"));
        assert!(IdHasher::new(b"short").is_err());
    }
}
