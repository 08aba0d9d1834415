//! The entity-change ticket linked to a deregistered enterprise's appeal, filed from an
//! account verified as the new company.

use super::*;

/// The entity-change request a reviewer links to a deregistered enterprise's appeal.
#[derive(Debug, Clone, Copy)]
pub struct EntityLink<'a> {
    /// The entity-change request's ticket reference.
    pub entity_ticket: &'a str,
    /// The directory account, verified as the new company, that filed it.
    pub account: &'a str,
}

impl Intake {
    /// Links the entity-change ticket filed from an account verified as the new company.
    pub async fn link_entity_change(
        &self,
        ticket: &TicketNumber,
        link: &EntityLink<'_>,
        actor: &Actor,
        expect_version: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, IntakeError> {
        let (entity_ticket, new_company_account) = (link.entity_ticket, link.account);
        let record = self.load(ticket).await?;
        // Checked first so a stale read hears so (and not some rule it no longer meets);
        // the engine checks again in the commit.
        if let Some(refusal) = crate::app::stale_read(expect_version, &record) {
            return Err(EngineError::Refused(refusal).into());
        }
        let data = AppealData::from_record(&record)?;
        if !data.entity_change.required {
            return Err(IntakeError::Refused(format!(
                "appeal {ticket} does not change the verified entity; there is nothing to link"
            )));
        }
        let entity_ticket = entity_ticket.trim().to_string();
        if entity_ticket.is_empty() || entity_ticket.chars().count() > 64 {
            return Err(IntakeError::Invalid(vec![FieldError::new(
                "entity_ticket",
                "the entity-change request's ticket reference (1 to 64 characters)",
            )]));
        }
        let company = data.draft.new_company.as_ref().map(|c| c.name.clone()).unwrap_or_default();
        let linked = self.directory.by_name(new_company_account).await?.ok_or_else(|| {
            IntakeError::Invalid(vec![FieldError::new(
                "account",
                format!("no account named {new_company_account:?} in the directory"),
            )])
        })?;
        let verified_as_company = linked.verification == VerificationType::Enterprise
            && linked.enterprise_status == Some(crate::domain::EnterpriseStatus::Active)
            && linked.enterprise_name.as_deref() == Some(company.as_str());
        if !verified_as_company {
            return Err(IntakeError::Refused(format!(
                "account {new_company_account:?} is not verified as the new company {company:?}: the entity-change \
                 request must come from an account verified with the new company's identity"
            )));
        }
        let now = self.engine.now();
        let mut cmd = Fire::new(self.engine.workflow().bindings().link_entity_change.clone());
        cmd.expect_version = expect_version;
        cmd.payload = serde_json::json!({ "entity_ticket": entity_ticket, "account": new_company_account });
        let actor_name = actor.name.clone();
        let update = move |current: &AppealRecord| {
            let mut data = AppealData::from_record(current)?;
            data.entity_change.ticket = Some(entity_ticket.clone());
            data.entity_change.account = Some(linked.name.clone());
            data.entity_change.linked_by = Some(actor_name.clone());
            data.entity_change.linked_at = Some(now);
            Ok(serde_json::to_value(&data).expect("appeal data serialises"))
        };
        Ok(self.engine.fire_updating(ticket, &cmd, actor, idempotency_key, Some(&update)).await?)
    }
}
