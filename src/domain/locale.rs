//! The languages applicants are answered in: Simplified Chinese (`zh-CN`, the default) and
//! English (`en`). Parsed leniently from a language tag (`en-US`, `zh`, `zh_CN`) or an
//! Accept-Language header, so every surface reads an applicant's language the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a supported language: use en or zh-CN (en-US, zh and the like are read as these)")]
pub struct LocaleError(pub String);

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::ZhCn, Locale::En];

    /// The canonical tag: `zh-CN` or `en`, as templates and stored drafts name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// Reads a language tag by its primary language: `en`, `en-US`, `EN_gb` are English;
    /// `zh`, `zh-CN`, `zh-Hans-CN` are Chinese.
    pub fn parse(tag: &str) -> Result<Locale, LocaleError> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "en" => Ok(Locale::En),
            "zh" => Ok(Locale::ZhCn),
            _ => Err(LocaleError(tag.to_string())),
        }
    }

    /// The language a stored value names; the default when it names none or one this
    /// version does not speak (stored data is read leniently, never refused).
    pub fn or_default(tag: Option<&str>) -> Locale {
        tag.and_then(|t| Locale::parse(t).ok()).unwrap_or_default()
    }

    /// The first supported language of an Accept-Language header, in the order the
    /// client listed them (languages weighted `q=0` are skipped); the default when none is.
    pub fn from_accept_language(header: &str) -> Locale {
        header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';').map(str::trim);
                let tag = pieces.next()?;
                let refused = pieces.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
                if refused { None } else { Locale::parse(tag).ok() }
            })
            .next()
            .unwrap_or_default()
    }
}

impl FromStr for Locale {
    type Err = LocaleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Locale::parse(s)
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_language_tags_by_their_primary_language() {
        for tag in ["en", "en-US", "EN_gb", " en "] {
            assert_eq!(Locale::parse(tag), Ok(Locale::En), "{tag}");
        }
        for tag in ["zh", "zh-CN", "zh_cn", "zh-Hans-CN"] {
            assert_eq!(Locale::parse(tag), Ok(Locale::ZhCn), "{tag}");
        }
    }

    #[test]
    fn refuses_a_language_it_does_not_speak_naming_the_supported_ones() {
        for tag in ["fr", "", "english", "e"] {
            let err = Locale::parse(tag).unwrap_err().to_string();
            assert!(err.contains("en or zh-CN"), "{err}");
        }
    }

    #[test]
    fn defaults_to_chinese_and_round_trips_through_its_tag() {
        assert_eq!(Locale::default(), Locale::ZhCn);
        assert_eq!(Locale::or_default(None), Locale::ZhCn);
        assert_eq!(Locale::or_default(Some("fr")), Locale::ZhCn);
        for l in Locale::ALL {
            assert_eq!(l.as_str().parse::<Locale>(), Ok(l));
            assert_eq!(serde_json::to_value(l).unwrap(), serde_json::json!(l.as_str()));
            assert_eq!(serde_json::from_value::<Locale>(serde_json::json!(l.as_str())).unwrap(), l);
        }
    }

    #[test]
    fn takes_the_first_supported_language_of_an_accept_language_header() {
        assert_eq!(Locale::from_accept_language("fr-FR, en-US;q=0.8, zh;q=0.5"), Locale::En);
        assert_eq!(Locale::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"), Locale::ZhCn);
        assert_eq!(Locale::from_accept_language("en;q=0, fr"), Locale::ZhCn);
        assert_eq!(Locale::from_accept_language(""), Locale::ZhCn);
    }
}
