//! Notifications delivered through their channel, at least once, falling back along the
//! notification's chain of channels.

use super::*;

impl Work {
    /// Delivers one notification through the channel and commits the result whole: the
    /// notification's record and, on delivery, the transition it fires (the rejection
    /// notice opens the resubmission window) and the later channels of its chain skipped;
    /// on a permanent failure (or the last attempt's), the next channel of its chain, or —
    /// when every channel failed — the transition that moves the appeal on without it.
    /// Delivery is at least once: a crash after sending and before this commit sends
    /// again, with the same `Idempotency-Key`.
    pub async fn deliver(&self, id: i64, run: &StepRun) -> Result<(), WorkError> {
        for _ in 0..RACES {
            let store = self.engine.store();
            let n =
                store.notification(id).await?.ok_or_else(|| WorkError::Permanent(format!("no notification {id}")))?;
            if n.status != NotificationStatus::Pending {
                return Ok(());
            }
            let record = match &n.appeal_id {
                Some(a) => Some(self.appeal(a).await?),
                None => None,
            };
            crate::failpoint!(self.scope(), "delivery.before_send");
            let sent = self.channel.deliver(&n).await;
            crate::failpoint!(self.scope(), "delivery.after_send");
            let now = self.engine.now();
            let mut uow = UnitOfWork::new(now);
            let mut fires = Vec::new();
            let mut result = Ok(());
            match sent {
                Ok(()) => {
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Sent,
                        error: None,
                    });
                    for later in self.chain_after(&n).await? {
                        if later.status == NotificationStatus::Held {
                            uow.deliveries.push(DeliveryUpdate::Skip { id: later.id });
                        }
                    }
                    if let Some(t) = &n.on_delivered {
                        let mut fire = Fire::new(t.clone());
                        fire.payload = serde_json::json!({ "notice": n.chain.as_deref().unwrap_or(&n.idempotency_key), "channel": n.channel });
                        fires.push(fire);
                    }
                }
                Err(e) if e.retryable && !run.last() => {
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Pending,
                        error: Some(e.message.clone()),
                    });
                    uow.defer_job = run.deferral();
                    result = Err(WorkError::Retry(e.message));
                }
                Err(e) => {
                    warn!(notification = id, channel = %n.channel, template = %n.template, error = %e.message, "notification failed for good");
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Failed,
                        error: Some(e.message.clone()),
                    });
                    match self.chain_after(&n).await?.into_iter().find(|l| l.status == NotificationStatus::Held) {
                        Some(next) => uow.deliveries.push(DeliveryUpdate::Release { id: next.id }),
                        None => {
                            if let Some(t) = &n.on_undeliverable {
                                let mut fire = Fire::new(t.clone());
                                fire.payload = serde_json::json!({
                                    "notice": n.chain.as_deref().unwrap_or(&n.idempotency_key),
                                    "why": "every channel failed",
                                });
                                fires.push(fire);
                            }
                        }
                    }
                }
            }
            let committed = match (&record, fires.is_empty()) {
                (Some(record), false) => self.commit(record, Outcome::Fire(fires, uow)).await?,
                _ => self.commit_rows(uow).await?,
            };
            if committed {
                crate::failpoint!(self.scope(), "delivery.after_commit");
                return result;
            }
        }
        Err(WorkError::Retry(format!("notification {id}: lost {RACES} races in a row; retried later")))
    }

    /// The later channels of a notification's fallback chain, in order.
    async fn chain_after(&self, n: &NotificationRecord) -> Result<Vec<NotificationRecord>, WorkError> {
        let Some(chain) = &n.chain else { return Ok(vec![]) };
        Ok(self.engine.store().chain(chain).await?.into_iter().filter(|c| c.position > n.position).collect())
    }
}
