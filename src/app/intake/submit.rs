//! Submission: everything checked at once, the documents stored, an appeal waiting in its
//! resubmission window superseded, the appeal created and screened, all in one commit.

use super::*;

/// What a successful submission answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    pub ticket: TicketNumber,
    pub state: String,
    pub version: i64,
    /// The earlier appeal this one superseded, if any.
    pub superseded: Option<String>,
    /// Screening's rejection, with guidance, when the scenario is inapplicable.
    pub screening: Option<String>,
    pub replayed: bool,
}

impl Intake {
    /// The account's open appeal after its overdue timers have fired (a window that
    /// closed while no worker ran is closed before anything is decided about it).
    async fn open_appeal(&self, account: &str) -> Result<Option<AppealRecord>, IntakeError> {
        match self.engine.store().open_appeal_for(account).await? {
            Some(open) => {
                let open = self.engine.catch_up(open).await?;
                Ok(open.outcome.is_none().then_some(open))
            }
            None => Ok(None),
        }
    }

    /// Validates everything at once, stores the documents, supersedes an appeal waiting
    /// in its resubmission window, creates the appeal, and screens it.
    pub async fn submit(
        &self,
        input: DraftInput,
        files: &dyn DocumentSource,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let mut draft = self.parse(input)?;
        let account = self.resolve(&draft).await?;
        let checklist = evaluate(&self.rules, &account, &draft);
        if !checklist.ready() {
            return Err(IntakeError::Incomplete(Box::new(checklist)));
        }
        let loaded = self.check_documents(&draft, files).await?;
        Self::address_documents(&mut draft, &loaded);

        let applicant = Actor::new("applicant", Role::Applicant);
        // A dispute stays with the account: a new appeal after a stopped change (withdrawn,
        // superseded or closed) is flagged as the stopped one was.
        let earlier = self.engine.store().appeals_of_account(&account.name).await?;
        let disputed = earlier.iter().rev().find_map(|r| {
            r.data.get("disputed").filter(|d| !d.is_null()).and_then(|d| serde_json::from_value(d.clone()).ok())
        });
        let data = AppealData {
            draft,
            case: checklist.case.clone(),
            changes_secure_phone: checklist.changes_secure_phone,
            entity_change: EntityChange { required: checklist.requires_entity_change_ticket, ..Default::default() },
            previous_documents: vec![],
            verification: Some(account.verification),
            first_approval: None,
            pending_change: None,
            disputed,
        };
        let new = NewAppeal {
            account: account.name.clone(),
            data: serde_json::to_value(&data).expect("appeal data serialises"),
        };

        // A repeat of a keyed submission answers as the first did, whatever is open now.
        if let Some(key) = idempotency_key
            && let Some(first) = self.engine.replay_create(key, &new, &applicant).await?
        {
            return self.submitted(first, None).await;
        }
        // Nothing is stored when another appeal is open (one waiting in its window is
        // superseded, in the same commit as the new appeal is created).
        let open = self.open_appeal(&account.name).await?;
        let window = self.engine.workflow().bindings();
        let supersedes = open.as_ref().filter(|o| {
            self.engine.workflow().transition(&window.supersede).is_some_and(|t| t.from.contains(&o.state))
        });
        if let Some(open) = &open
            && supersedes.is_none()
        {
            return Err(EngineError::OpenAppeal {
                account: account.name.clone(),
                ticket: open.ticket.to_string(),
                state: open.state.clone(),
            }
            .into());
        }
        self.store_documents(loaded).await?;

        // Supersede, create and screen: one unit of work, all or nothing.
        let mut commands = Vec::new();
        if let Some(open) = supersedes {
            let mut cmd = Fire::new(window.supersede.clone());
            cmd.reasons = vec![format!("superseded by a new appeal for account {}", account.name)];
            commands.push(Command::new(Target::Ticket(open.ticket.clone()), cmd, Actor::system()));
        }
        let primary = commands.len();
        let mut creation = Fire::new(window.submit.clone());
        creation.payload = face_evidence(&data.draft);
        commands.push(Command::new(Target::New(new.clone()), creation, applicant.clone()));
        commands.extend(self.screening(&account, &checklist));
        let keyed = idempotency_key.map(|k| Engine::create_keyed(k, &new, &applicant));
        let created = self.engine.execute(commands, primary, UnitOfWork::default(), keyed).await?;
        let superseded = created.also.iter().find(|o| o.transition == window.supersede).map(|o| o.ticket.to_string());
        self.submitted(created, superseded).await
    }

    async fn submitted(&self, created: CommandOutcome, superseded: Option<String>) -> Result<Submitted, IntakeError> {
        let record = self
            .engine
            .store()
            .appeal_by_ticket(&created.ticket)
            .await?
            .ok_or_else(|| EngineError::NotFound(created.ticket.to_string()))?;
        let history = self.engine.store().history(&record.id).await?;
        let screening_transition = &self.engine.workflow().bindings().screening;
        let screening = history
            .iter()
            .rev()
            .find(|e| &e.transition == screening_transition)
            .and_then(|e| e.reasons.first().cloned());
        Ok(Submitted {
            ticket: created.ticket,
            state: record.state,
            version: record.version,
            superseded,
            screening,
            replayed: created.replayed,
        })
    }
}
