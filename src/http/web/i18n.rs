//! The pages' two languages: zh-CN (the default) and en, chosen by the visitor (a link
//! on every page, kept in a cookie), else by the browser's Accept-Language. The words
//! for the workflow's own names (items, stages, states) live here once.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::cookies;
use crate::domain::AppealItem;
use crate::domain::document::DocumentKind;
use crate::domain::draft::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(raw: &str) -> Option<Lang> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw.starts_with("zh") {
            Some(Lang::Zh)
        } else if raw.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The `lang` attribute and the code stored with a draft (notifications' language).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The name of this language in itself (the switch link's text).
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    /// One of two texts.
    pub fn t<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn item(self, item: AppealItem) -> &'static str {
        use AppealItem::*;
        let (en, zh) = match item {
            RetrieveUsername => ("Retrieve username", "找回登录名"),
            ResetPassword => ("Reset password", "重置密码"),
            ChangeSecurePhone => ("Change secure phone number", "修改安全手机"),
            ChangeSecurityEmail => ("Change security email address", "修改安全邮箱"),
            DetachMfa => ("Detach MFA device", "解绑 MFA 多因素认证"),
            ClearSecurityQuestions => ("Clear security questions", "清除密保问题"),
            ClearIpLogonMask => ("Clear IP logon mask", "清除登录 IP 掩码"),
            Other => ("Other", "其他"),
        };
        self.t(en, zh)
    }

    pub fn scenario(self, s: Scenario) -> &'static str {
        match s {
            Scenario::Active => self.t("The enterprise operates normally", "企业正常经营"),
            Scenario::NameChanged => self.t("The enterprise's name has changed", "企业名称已变更"),
            Scenario::Deregistered => self.t("The enterprise is deregistered", "企业已注销"),
        }
    }

    pub fn document(self, kind: DocumentKind) -> &'static str {
        kind.name_in(self.locale())
    }

    pub fn locale(self) -> crate::domain::Locale {
        match self {
            Lang::Zh => crate::domain::Locale::ZhCn,
            Lang::En => crate::domain::Locale::En,
        }
    }

    /// A workflow state in words (the console and the applicant's stage).
    pub fn state(self, state: &str) -> String {
        let (en, zh) = match state {
            "submitted" => ("Received, waiting for review", "已受理，等待审核"),
            "under_review" => ("Under review", "审核中"),
            "awaiting_second_approval" => {
                ("Approved once, waiting for a second approver", "已初审通过，等待第二人审批")
            }
            "cooling_off" => {
                ("Approved: the change waits for the account holder to object", "已批准：变更等待账号持有人确认无异议")
            }
            "approved" => ("Approved", "审核通过"),
            "rejected" => ("Rejected", "审核未通过"),
            "resubmission_window" => ("Rejected: documents may be added", "未通过：可补充材料"),
            "closed" => ("Closed", "已结束"),
            "received" => ("Received, waiting for review", "已受理，等待审核"),
            other => return other.replace('_', " "),
        };
        self.t(en, zh).to_string()
    }

    pub fn outcome(self, outcome: &str) -> String {
        let (en, zh) = match outcome {
            "completed" => ("completed: the account changes are done", "已完成：账号变更已生效"),
            "expired" => ("the time to add documents ran out", "补充材料期限已过"),
            "withdrawn" => ("withdrawn", "已撤回"),
            "superseded" => ("replaced by a newer appeal", "已被新的申诉取代"),
            other => return other.replace('_', " "),
        };
        self.t(en, zh).to_string()
    }
}

impl Lang {
    /// A moment in the workflow's time zone, in words: "2026-12-07 (Mon) 23:59, Asia/Shanghai".
    pub fn when(self, tz: chrono_tz::Tz, at: chrono::DateTime<chrono::Utc>) -> String {
        let local = at.with_timezone(&tz);
        format!(
            "{} ({}) {}, {}",
            local.format("%Y-%m-%d"),
            self.weekday(local.date_naive()),
            local.format("%H:%M"),
            tz.name()
        )
    }

    /// A moment given as RFC 3339 (as the app's views carry it), in words.
    pub fn when_text(self, tz: chrono_tz::Tz, rfc3339: &str) -> String {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| self.when(tz, t.with_timezone(&chrono::Utc)))
            .unwrap_or_else(|_| rfc3339.to_string())
    }

    pub fn weekday(self, date: chrono::NaiveDate) -> &'static str {
        use chrono::Datelike;
        let i = date.weekday().num_days_from_monday() as usize;
        match self {
            Lang::En => ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][i],
            Lang::Zh => ["周一", "周二", "周三", "周四", "周五", "周六", "周日"][i],
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let asked =
            parts.uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))).and_then(Lang::parse);
        let kept = cookies::get(&parts.headers, cookies::LANG).as_deref().and_then(Lang::parse);
        let browser = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').find_map(|l| Lang::parse(l.split(';').next().unwrap_or(""))));
        Ok(asked.or(kept).or(browser).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_codes_and_browser_tags() {
        assert_eq!(Lang::parse("en-US"), Some(Lang::En));
        assert_eq!(Lang::parse("zh-Hans-CN"), Some(Lang::Zh));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::En.t("a", "b"), "a");
        assert_eq!(Lang::Zh.item(AppealItem::DetachMfa), "解绑 MFA 多因素认证");
    }
}
