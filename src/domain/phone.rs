//! Phone numbers: the contact phone an appeal is tracked by, and the secure phone an
//! approval rotates to. Parsed once at the edge into E.164; everything that logs or
//! records a phone uses the masked form.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a phone number is an 11-digit mainland mobile number starting with 1 (e.g. 13812345678) \
     or an international number in E.164 form (+ then 8 to 15 digits); got {0} characters that are neither"
)]
pub struct PhoneError(usize);

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
        let invalid = || PhoneError(input.chars().count());
        if let Some(rest) = compact.strip_prefix('+') {
            let ok =
                (8..=15).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit()) && !rest.starts_with('0');
            if !ok {
                return Err(invalid());
            }
            if let Some(national) = rest.strip_prefix("86")
                && national.starts_with('1')
                && national.len() != 11
            {
                return Err(invalid());
            }
            return Ok(PhoneNumber(compact));
        }
        if compact.len() == 11 && compact.starts_with('1') && compact.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(PhoneNumber(format!("+86{compact}")));
        }
        Err(invalid())
    }

    /// E.164 form, e.g. `+8613812345678`.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// For logs, events and screens: only the last four digits (and, for mainland
    /// mobiles, the carrier prefix) are shown.
    pub fn masked(&self) -> String {
        let s = &self.0;
        if let Some(national) = s.strip_prefix("+86")
            && national.len() == 11
        {
            return format!("+86 {}****{}", &national[..3], &national[7..]);
        }
        let keep = &s[s.len() - 4..];
        format!("+{}{}", "*".repeat(s.len() - 5), keep)
    }
}

impl fmt::Display for PhoneNumber {
    /// Display is masked so a phone can never reach a log line by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainland_mobiles_are_normalised_to_e164() {
        let p = PhoneNumber::parse("138 1234 5678").unwrap();
        assert_eq!(p.as_e164(), "+8613812345678");
        assert_eq!(PhoneNumber::parse("+86 138-1234-5678").unwrap(), p);
    }

    #[test]
    fn masked_form_hides_the_middle_digits() {
        let p = PhoneNumber::parse("13812345678").unwrap();
        assert_eq!(p.masked(), "+86 138****5678");
        assert_eq!(p.to_string(), "+86 138****5678");
        let intl = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(intl.masked(), "+*********5678");
    }

    #[test]
    fn rejects_numbers_that_are_not_phones() {
        for bad in ["", "12345", "23812345678", "+0123456789", "+86138123", "phone", "+1234567890123456"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
