//! Ticket numbers: what an applicant reads aloud, types into the progress page and
//! receives by SMS. Twenty digits in groups of four: nineteen random digits (more than
//! 63 bits, so tickets cannot be guessed or enumerated) and one Damm check digit, which
//! catches every single-digit typo and every swap of two adjacent digits.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

const BODY_DIGITS: usize = 19;
const TOTAL_DIGITS: usize = BODY_DIGITS + 1;

/// The Damm quasigroup of order 10 (weakly totally anti-symmetric).
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

fn damm(digits: &[u8]) -> u8 {
    digits.iter().fold(0u8, |interim, &d| DAMM[interim as usize][d as usize])
}

/// A validated ticket number, stored and compared as its 20 digits without separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("a ticket number has 20 digits (groups of four may be separated by '-' or spaces); got {0} digits")]
    Length(usize),
    #[error("a ticket number contains only digits, '-' and spaces; found {0:?}")]
    Character(char),
    #[error("the ticket number's check digit does not match: check it for a mistyped or swapped digit")]
    CheckDigit,
}

impl TicketNumber {
    /// Draws a fresh ticket number from the operating system's random source.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut digits: Vec<u8> = (0..BODY_DIGITS).map(|_| rng.random_range(0..10u8)).collect();
        digits.push(damm(&digits));
        TicketNumber(digits.iter().map(|d| char::from(b'0' + d)).collect())
    }

    pub fn parse(input: &str) -> Result<Self, TicketError> {
        let mut digits = Vec::with_capacity(TOTAL_DIGITS);
        for c in input.trim().chars() {
            match c {
                '0'..='9' => digits.push(c as u8 - b'0'),
                '-' | ' ' => {}
                other => return Err(TicketError::Character(other)),
            }
        }
        if digits.len() != TOTAL_DIGITS {
            return Err(TicketError::Length(digits.len()));
        }
        if damm(&digits) != 0 {
            return Err(TicketError::CheckDigit);
        }
        Ok(TicketNumber(digits.iter().map(|d| char::from(b'0' + d)).collect()))
    }

    /// The canonical form: 20 digits, no separators (what the database stores).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketNumber {
    /// Groups of four separated by '-', the form printed and sent by SMS.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<&str> = self
            .0
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ticket numbers are ASCII digits"))
            .collect();
        f.write_str(&groups.join("-"))
    }
}

impl FromStr for TicketNumber {
    type Err = TicketError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TicketNumber {
    type Error = TicketError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// Serialised as it is shown everywhere else (groups of four separated by '-'), so every
/// answer writes a ticket one way; either form parses back.
impl From<TicketNumber> for String {
    fn from(t: TicketNumber) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tickets_parse_back_in_both_forms() {
        for _ in 0..1000 {
            let t = TicketNumber::generate();
            assert_eq!(TicketNumber::parse(t.as_str()).unwrap(), t);
            assert_eq!(TicketNumber::parse(&t.to_string()).unwrap(), t);
            assert_eq!(t.to_string().len(), 24);
        }
    }

    #[test]
    fn generated_tickets_are_random_in_every_position() {
        // A counter or a timestamp would leave the leading digits nearly constant; random
        // tickets use every digit in every position across a thousand draws.
        let tickets: Vec<TicketNumber> = (0..1000).map(|_| TicketNumber::generate()).collect();
        for pos in 0..BODY_DIGITS {
            let distinct: std::collections::HashSet<u8> = tickets.iter().map(|t| t.as_str().as_bytes()[pos]).collect();
            assert_eq!(distinct.len(), 10, "position {pos} uses only {} digits", distinct.len());
        }
        let unique: std::collections::HashSet<&TicketNumber> = tickets.iter().collect();
        assert_eq!(unique.len(), tickets.len());
    }

    #[test]
    fn rejects_wrong_length_and_characters() {
        assert_eq!(TicketNumber::parse("1234"), Err(TicketError::Length(4)));
        assert_eq!(TicketNumber::parse("1234-5678-9012-345X-0000"), Err(TicketError::Character('X')));
    }

    proptest! {
        #[test]
        fn any_single_digit_typo_is_rejected(pos in 0usize..20, delta in 1u8..10) {
            let t = TicketNumber::generate();
            let mut bytes = t.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + ((bytes[pos] - b'0' + delta) % 10);
            let typo = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(TicketNumber::parse(&typo), Err(TicketError::CheckDigit));
        }

        #[test]
        fn any_adjacent_swap_of_different_digits_is_rejected(pos in 0usize..19) {
            let t = TicketNumber::generate();
            let mut bytes = t.as_str().as_bytes().to_vec();
            prop_assume!(bytes[pos] != bytes[pos + 1]);
            bytes.swap(pos, pos + 1);
            let swapped = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(TicketNumber::parse(&swapped), Err(TicketError::CheckDigit));
        }
    }
}
