//! A unit of work executed: its commands decided in order, their effects planned, and all
//! of it committed once; tried again on a taken ticket number, replayed for a repeated key.

use super::*;

const TICKET_ATTEMPTS: usize = 5;

/// Why one attempt at a unit of work must be made again from the start.
enum Again {
    TicketTaken,
    Failed(EngineError),
}

impl From<EngineError> for Again {
    fn from(e: EngineError) -> Self {
        Again::Failed(e)
    }
}

impl From<StoreError> for Again {
    fn from(e: StoreError) -> Self {
        Again::Failed(e.into())
    }
}

impl From<Refusal> for Again {
    fn from(e: Refusal) -> Self {
        Again::Failed(e.into())
    }
}

impl Engine {
    /// Decides `commands` in order — each on the appeal as the ones before it left it —
    /// plans their effects, and commits them together with `base` (rows a job step adds:
    /// its own result) as ONE unit of work. Answers the outcome of `commands[primary]`
    /// (every other transition committed comes along in `also`). With a key, a repeat
    /// answers as the first did.
    pub async fn execute(
        &self,
        commands: Vec<Command<'_>>,
        primary: usize,
        base: UnitOfWork,
        keyed: Option<Keyed>,
    ) -> Result<CommandOutcome, EngineError> {
        let mut bad = Vec::new();
        for (n, c) in commands.iter().enumerate() {
            let prefix = if commands.len() > 1 { format!("commands[{n}].") } else { String::new() };
            if let Err(e) = crate::domain::check_text(&format!("{prefix}actor"), &c.actor.name, false) {
                bad.push(e);
            }
            for (i, r) in c.fire.reasons.iter().enumerate() {
                if let Err(e) = crate::domain::check_text(&format!("{prefix}reasons[{i}]"), r, true) {
                    bad.push(e);
                }
            }
        }
        if !bad.is_empty() {
            return Err(EngineError::Invalid(bad));
        }
        if commands.is_empty() {
            return Err(EngineError::Invalid(vec![FieldError::new("commands", "nothing to do")]));
        }
        let print = keyed.as_ref().map(|k| fingerprint(&k.basis));
        // The first command's appeal and the key's record, read together (one round
        // trip); an appeal is read on its own only when no command names one.
        let mut preload = None;
        match commands[0].target.key() {
            Some(key) => {
                let now = self.clock.now();
                let load = self.store.load_for_command(key, now, keyed.as_ref().map(|k| k.key.as_str())).await?;
                if let (Some(k), Some(p), Some(record)) = (&keyed, &print, &load.idempotency) {
                    return self.replayed(&k.key, p, record.clone());
                }
                preload = Some((now, load));
            }
            None => {
                if let (Some(k), Some(p)) = (&keyed, &print)
                    && let Some(done) = self.replay(&k.key, p).await?
                {
                    return Ok(done);
                }
            }
        }
        let keyed = keyed.as_ref().zip(print.as_deref());
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A second attempt reads afresh.
            match self.execute_once(&commands, primary, base.clone(), keyed, preload.take()).await {
                Ok(outcome) => return Ok(outcome),
                Err(Again::TicketTaken) if attempt < TICKET_ATTEMPTS => continue,
                Err(Again::TicketTaken) => {
                    return Err(EngineError::Store(StoreError::Corrupt(format!(
                        "{TICKET_ATTEMPTS} random ticket numbers in a row were taken"
                    ))));
                }
                // A repeat of a keyed command can lose the race to its own first attempt
                // (it loaded the appeal before that commit): it is still a repeat, so it
                // answers with the first result rather than a refusal or a conflict.
                Err(Again::Failed(
                    e @ (EngineError::Refused(_) | EngineError::Conflict { .. } | EngineError::OpenAppeal { .. }),
                )) => {
                    return match keyed {
                        Some((k, p)) => self.replay(&k.key, p).await?.ok_or(e),
                        None => Err(e),
                    };
                }
                Err(Again::Failed(e)) => return Err(e),
            }
        }
    }

    async fn execute_once(
        &self,
        commands: &[Command<'_>],
        primary: usize,
        base: UnitOfWork,
        keyed: Option<(&Keyed, &str)>,
        mut preload: Option<(DateTime<Utc>, CommandLoad)>,
    ) -> Result<CommandOutcome, Again> {
        let now = preload.as_ref().map_or_else(|| self.clock.now(), |(at, _)| *at);
        let mut uow = UnitOfWork { at: now, ..base };
        // Each appeal as the unit of work leaves it so far.
        let mut touched: HashMap<String, AppealRecord> = HashMap::new();
        let mut last: Option<String> = None;
        let mut outcomes = Vec::new();
        let mut primary_at = 0;
        for (i, cmd) in commands.iter().enumerate() {
            if i == primary {
                primary_at = outcomes.len();
            }
            let before = match &cmd.target {
                Target::New(_) => None,
                Target::Same => {
                    let id =
                        last.as_ref().ok_or_else(|| EngineError::Effects("`Same` names no earlier appeal".into()))?;
                    Some(touched[id].clone())
                }
                Target::Ticket(t) => match touched.values().find(|r| &r.ticket == t) {
                    Some(r) => Some(r.clone()),
                    None => Some(self.load(AppealKey::Ticket(t), now, preload.take()).await?),
                },
                Target::Id(id) => match touched.get(id) {
                    Some(r) => Some(r.clone()),
                    None => Some(self.load(AppealKey::Id(id), now, preload.take()).await?),
                },
            };
            // Only the first command's appeal was read ahead.
            preload = None;
            let wf = match &before {
                Some(record) => self.workflow_of(record)?,
                None => &self.workflow,
            };
            let mut decision = decide(wf, before.as_ref().map(Self::snapshot).as_ref(), &cmd.fire, &cmd.actor, now)?;
            let mut write = match (&cmd.target, &before) {
                (Target::New(appeal), _) => AppealWrite {
                    // Time-ordered (UUIDv7): an appeal's rows in every index keyed by its id
                    // (events, timers, notifications) sit beside those of the appeals
                    // created about when it was, so a batch touches few pages, not one
                    // per appeal. The id is internal, never a credential.
                    id: uuid::Uuid::now_v7().to_string(),
                    ticket: TicketNumber::generate(),
                    workflow: self.workflow.name().to_string(),
                    workflow_version: i64::from(self.workflow.def.workflow.version),
                    account: appeal.account.clone(),
                    data: appeal.data.clone(),
                    state: decision.to.clone(),
                    outcome: decision.outcome.clone(),
                    assignee: decision.assignee.clone(),
                    data_changed: true,
                    expected_version: None,
                },
                (_, Some(record)) => base_write(record, &decision),
                (_, None) => unreachable!("only a new appeal has no record"),
            };
            if let (Some(update), Some(record)) = (cmd.update, &before) {
                write.data = update(record)?;
                write.data_changed = write.data != record.data;
            }
            if before.is_some() {
                record_decision(&mut write, &mut decision, &cmd.actor, now);
            }
            let after = self
                .add(&mut uow, before.as_ref(), write, decision, &cmd.actor, None, now, &mut outcomes, None)
                .await?;
            last = Some(after.id.clone());
            touched.insert(after.id.clone(), after);
        }
        let mut answer = outcomes.remove(primary_at.min(outcomes.len() - 1));
        answer.also = outcomes;
        if let Some((k, print)) = keyed {
            uow.idempotency = Some(IdempotencyRecord {
                key: k.key.clone(),
                fingerprint: print.to_string(),
                response: serde_json::to_value(&answer).expect("outcomes serialise"),
                created_at: now,
            });
        }
        match self.store.commit(&uow).await {
            Ok(()) => {
                for o in std::iter::once(&answer).chain(&answer.also) {
                    info!(ticket = %o.ticket, transition = %o.transition, state = %o.state, "transition committed");
                }
                Ok(answer)
            }
            Err(CommitError::TicketTaken) => Err(Again::TicketTaken),
            Err(CommitError::OpenAppealExists) => {
                let account = commands
                    .iter()
                    .find_map(|c| match &c.target {
                        Target::New(a) => Some(a.account.clone()),
                        _ => None,
                    })
                    .or_else(|| touched.values().next().map(|r| r.account.clone()))
                    .unwrap_or_default();
                let open = self.store.open_appeal_for(&account).await?;
                Err(Again::Failed(match open {
                    Some(open) => {
                        EngineError::OpenAppeal { account, ticket: open.ticket.to_string(), state: open.state }
                    }
                    // It closed in the meantime: the caller may simply try again.
                    None => EngineError::Conflict { state: self.workflow.bindings().closed_state.clone(), version: 0 },
                }))
            }
            Err(CommitError::IdempotencyKeyTaken) => {
                let (k, print) = keyed.expect("only keyed commands insert a key");
                Err(Again::Failed(match self.replay(&k.key, print).await {
                    Ok(Some(first)) => return Ok(first),
                    Ok(None) => {
                        EngineError::Store(StoreError::Corrupt(format!("idempotency key {:?} vanished", k.key)))
                    }
                    Err(e) => e,
                }))
            }
            Err(e) => Err(Again::Failed(commit_error(e))),
        }
    }
}

impl Engine {
    /// The appeal a command acts on, as of `now`: read (or taken from what the command
    /// read ahead), with its due timers fired first when it has any.
    async fn load(
        &self,
        key: AppealKey<'_>,
        now: DateTime<Utc>,
        preload: Option<(DateTime<Utc>, CommandLoad)>,
    ) -> Result<AppealRecord, EngineError> {
        let load = match preload {
            Some((_, load)) => load,
            None => self.store.load_for_command(key, now, None).await?,
        };
        let record = load.appeal.ok_or_else(|| {
            EngineError::NotFound(match key {
                AppealKey::Ticket(t) => t.to_string(),
                AppealKey::Id(id) => id.to_string(),
            })
        })?;
        if load.timer_due { Ok(self.catch_up(record).await?) } else { Ok(record) }
    }
}

pub(super) fn commit_error(e: CommitError) -> EngineError {
    match e {
        CommitError::Conflict { state, version } => EngineError::Conflict { state, version },
        CommitError::Stale(what) => EngineError::Stale(what),
        CommitError::Store(s) => EngineError::Store(s),
        other => EngineError::Store(StoreError::Corrupt(format!("unexpected commit outcome: {other}"))),
    }
}
