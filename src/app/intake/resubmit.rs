//! Resubmission: a rejected appeal continued within its window with modified or added
//! documents; the documents it replaced are kept on the record.

use super::*;

impl Intake {
    /// Continues a rejected appeal within its window with modified or added documents.
    pub async fn resubmit(
        &self,
        ticket: &TicketNumber,
        input: DraftInput,
        files: &dyn DocumentSource,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, IntakeError> {
        let record = self.engine.catch_up(self.load(ticket).await?).await?;
        let wf = self.engine.workflow();
        let b = wf.bindings();
        if record.state != b.window_state {
            let terminal = wf.state(&record.state).is_some_and(|s| s.terminal);
            let awaiting_notice = wf.transition(&b.notice_delivered).is_some_and(|t| t.from.contains(&record.state));
            let why = match (record.outcome.as_deref(), terminal, awaiting_notice) {
                (Some(outcome), true, _) if Some(outcome) == wf.window_expiry_outcome() => {
                    "the 3 calendar days to continue have passed".to_string()
                }
                (Some(outcome), true, _) => format!("it is {} ({outcome})", record.state),
                (_, _, true) => "the rejection notice has not been delivered yet; try again shortly".to_string(),
                _ => format!("it is {}, not rejected", record.state),
            };
            // A keyed repeat of a resubmission that went through answers as it did.
            if let Some(key) = idempotency_key
                && let Some(rec) = self.engine.store().idempotency(key).await?
                && let Ok(first) = serde_json::from_value::<CommandOutcome>(rec.response)
                && first.ticket == *ticket
                && first.transition == b.resubmit
            {
                return Ok(CommandOutcome { replayed: true, ..first });
            }
            return Err(IntakeError::NotResubmittable { ticket: ticket.to_string(), why });
        }
        let mut draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        if account.name != record.account {
            return Err(IntakeError::Invalid(vec![FieldError::new(
                "entry_point",
                format!("the draft locates account {:?}, but appeal {ticket} is for another account", account.name),
            )]));
        }
        let checklist = evaluate(&self.rules, &account, &draft);
        if !checklist.ready() {
            return Err(IntakeError::Incomplete(Box::new(checklist)));
        }
        let loaded = self.check_documents(&draft, files).await?;
        Self::address_documents(&mut draft, &loaded);
        self.store_documents(loaded).await?;
        let previous = AppealData::from_record(&record)?;
        let now = self.engine.now();
        let mut replaced = previous.previous_documents.clone();
        for old in &previous.draft.documents {
            let kept = draft.documents.iter().any(|d| d.kind == old.kind && d.sha256 == old.sha256);
            if !kept {
                replaced.push(ReplacedDocument { document: old.clone(), replaced_at: now });
            }
        }
        let data = AppealData {
            draft,
            case: checklist.case.clone(),
            changes_secure_phone: checklist.changes_secure_phone,
            entity_change: EntityChange {
                required: checklist.requires_entity_change_ticket,
                ..previous.entity_change.clone()
            },
            previous_documents: replaced,
            verification: Some(account.verification),
            first_approval: None,
            pending_change: None,
            disputed: previous.disputed.clone(),
        };
        let value = serde_json::to_value(&data).expect("appeal data serialises");
        let mut cmd = Fire::new(b.resubmit.clone());
        cmd.payload = face_evidence(&data.draft);
        cmd.payload["record"] = serde_json::json!(digest(&value));
        let update = move |_: &AppealRecord| Ok(value.clone());
        let applicant = Actor::new("applicant", Role::Applicant);
        let keyed = idempotency_key.map(|key| Keyed {
            key: key.to_string(),
            basis: serde_json::json!({ "op": "fire", "ticket": ticket.as_str(), "cmd": cmd, "actor": applicant }),
        });
        let mut commands = vec![Command {
            target: Target::Ticket(ticket.clone()),
            fire: cmd,
            actor: applicant,
            update: Some(&update),
        }];
        commands.extend(self.screening(&account, &checklist));
        Ok(self.engine.execute(commands, 0, UnitOfWork::default(), keyed).await?)
    }
}
