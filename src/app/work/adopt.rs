//! Work an earlier version left: the outbox rows it committed and did not relay, and pending
//! rows whose job it lost.

use super::*;

impl Work {
    /// Carries out, once, the outbox rows an earlier version committed and did not get
    /// to (that version relayed them to jobs after the commit): each becomes the rows and
    /// jobs it stands for, committed with the row marked done. Then gives every pending
    /// row that has no job one (a job the earlier version's relay lost). Answers how many
    /// of each; both are zero on a database this version has always run.
    pub async fn adopt_earlier_work(&self, retired_queue: &str) -> Result<(usize, usize), WorkError> {
        let store = self.engine.store();
        let mut adopted = 0;
        loop {
            let legacy = store.legacy_effects(200).await?;
            if legacy.is_empty() {
                break;
            }
            for e in legacy {
                let appeal = self.appeal(&e.appeal_id).await?;
                let history = store.history(&appeal.id).await?;
                let now = self.engine.now();
                let mut uow = UnitOfWork::new(now);
                uow.legacy_effects_done.push(e.id);
                let follow = match history.iter().find(|h| h.seq == e.event_seq) {
                    Some(event) => {
                        let kind = e
                            .effect
                            .parse()
                            .map_err(|_| EngineError::Effects(format!("unknown effect {:?}", e.effect)))?;
                        let effect = crate::workflow::definition::EffectDef {
                            effect: kind,
                            template: e.template.clone(),
                            // One this version does not know goes to the applicant, as it did.
                            to: e.recipient.as_deref().and_then(|r| r.parse().ok()),
                            fallback: false,
                            delivered: None,
                            undeliverable: None,
                            deadline: None,
                        };
                        self.planner.plan_legacy(&appeal, event, &effect, &e.idempotency_key, now, &mut uow).await?
                    }
                    None => None,
                };
                let committed = match follow {
                    Some(fire) => self.commit(&appeal, Outcome::Fire(vec![fire], uow)).await?,
                    None => self.commit_rows(uow).await?,
                };
                if committed {
                    adopted += 1;
                }
            }
        }
        if adopted > 0 {
            let retired = store.retire_queue(retired_queue).await?;
            warn!(adopted, retired, "carried out outbox rows an earlier version left; its effect jobs are retired");
        }
        let orphans = store.unqueued_work(500).await?;
        if !orphans.is_empty() {
            warn!(count = orphans.len(), "pending work without a job (left by an earlier version): queued now");
            store.enqueue(&orphans).await?;
        }
        Ok((adopted, orphans.len()))
    }
}
