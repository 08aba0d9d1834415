//! What one upload, and one draft's uploads, may be: the size, pixel and count limits,
//! and the check of a change to a draft's documents against them.

use super::error::describe_sizes;
use super::*;

/// What one upload, and one draft's uploads, may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// The largest document, in bytes.
    pub max_bytes: u64,
    /// The most pixels an image may have (width × height): a decompression bomb's
    /// declared size is refused before anything is decoded.
    pub max_pixels: u64,
    /// The most documents one draft may hold...
    pub max_per_draft: usize,
    /// ...and of one kind.
    pub max_per_kind: usize,
    /// The most bytes one draft's documents may add up to.
    pub max_draft_bytes: u64,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            max_bytes: 10 * MIB,
            max_pixels: 40_000_000,
            max_per_draft: 20,
            max_per_kind: 5,
            max_draft_bytes: 50 * MIB,
        }
    }
}

impl DocumentLimits {
    /// Checks a change to a draft's documents: refused only when it breaks a limit *and*
    /// grows the draft (more documents, more of a kind, or more bytes), so a draft over a
    /// limit lowered since (or admitted before the limit existed) can always be shrunk.
    pub fn check_change(&self, before: &[(DocumentKind, u64)], after: &[(DocumentKind, u64)]) -> Vec<FieldError> {
        let problems = self.check_collection(after.iter().copied());
        if problems.is_empty() {
            return problems;
        }
        let bytes = |d: &[(DocumentKind, u64)]| d.iter().map(|(_, s)| *s).sum::<u64>();
        let of = |d: &[(DocumentKind, u64)], k: DocumentKind| d.iter().filter(|(x, _)| *x == k).count();
        let grew = after.len() > before.len()
            || bytes(after) > bytes(before)
            || after.iter().any(|(k, _)| of(after, *k) > of(before, *k));
        if grew { problems } else { Vec::new() }
    }

    /// Checks one draft's documents (kind and size of each) against the per-draft
    /// limits: how many, how many of one kind, how many bytes in all.
    pub fn check_collection(&self, documents: impl IntoIterator<Item = (DocumentKind, u64)>) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut count = 0usize;
        let mut bytes = 0u64;
        let mut per_kind: std::collections::BTreeMap<DocumentKind, usize> = Default::default();
        for (kind, size) in documents {
            count += 1;
            bytes = bytes.saturating_add(size);
            *per_kind.entry(kind).or_default() += 1;
        }
        if count > self.max_per_draft {
            problems.push(FieldError::new(
                "documents",
                format!("a draft holds at most {} documents; this one would hold {count}", self.max_per_draft),
            ));
        }
        for (kind, n) in per_kind {
            if n > self.max_per_kind {
                problems.push(FieldError::new(
                    "documents",
                    format!(
                        "{kind}: a draft holds at most {} of this kind; this one would hold {n}",
                        self.max_per_kind
                    ),
                ));
            }
        }
        if bytes > self.max_draft_bytes {
            let (size, max) = describe_sizes(bytes, self.max_draft_bytes);
            problems.push(FieldError::new(
                "documents",
                format!("a draft's documents add up to at most {max}; this one's would be {size}"),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use DocumentKind::{BusinessLicense as L, Supplementary as S};

    #[test]
    fn a_draft_over_a_limit_can_shrink_but_not_grow() {
        let limits = DocumentLimits { max_per_draft: 2, max_per_kind: 1, max_draft_bytes: 100, ..Default::default() };
        let over = [(S, 10), (S, 10), (L, 10)];
        assert!(limits.check_change(&over, &over[..2]).is_empty(), "removing one is allowed");
        assert!(limits.check_change(&over, &[(S, 10), (S, 5), (L, 10)]).is_empty(), "a smaller replacement too");
        assert!(!limits.check_change(&over, &[(S, 10), (S, 10), (L, 11)]).is_empty(), "more bytes are not");
        assert!(!limits.check_change(&[(S, 10)], &[(S, 10), (S, 1)]).is_empty(), "a second of a kind is not");
        assert!(limits.check_change(&[], &[(S, 10)]).is_empty());
    }
}
