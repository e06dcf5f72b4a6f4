//! Targets lent over RPC (`wit/targets.wit`): Cloudflare's `RpcTarget`
//! instances and functions passed in RPC arguments and results.
//!
//! A guest lends one of its targets and gets a capability, an unguessable
//! token the value carries; [`Lending`] maps each capability to the lender
//! and the instance that lent it. A call through the capability is an event
//! of the lender (`call-target`): for an object, an event in its mailbox,
//! refused when the instance is gone, since its targets went with it; for
//! a worker, an event of the instance running the request that lent it,
//! while that request runs. Capabilities end when released (the stub's
//! disposal) or with their instance or request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::stub::{CallChain, Stub};
use crate::error::{Error, ErrorKind, Result};

/// Where the calls to a lent target go.
#[derive(Clone)]
pub(crate) enum Lender {
    /// An object's mailbox.
    Object(Stub),
    /// The worker instance running the request that lent it.
    Worker(mpsc::UnboundedSender<TargetCall>),
}

/// A call to a target a worker lent, for the worker's run.
pub(crate) struct TargetCall {
    pub(crate) target: u64,
    pub(crate) method: String,
    pub(crate) args: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<Vec<u8>>>,
}

/// Who lent a target: the owner, its instance (or request), and the number
/// the guest keeps the target under.
#[derive(Clone)]
pub(crate) struct Lent {
    pub(crate) owner: Lender,
    pub(crate) instance: u64,
    pub(crate) target: u64,
}

impl Lent {
    /// Calls `method` of the target with `args` on behalf of `chain`,
    /// within `timeout` for a worker's target.
    pub(crate) async fn call(
        self,
        method: String,
        args: Vec<u8>,
        chain: &CallChain,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        match self.owner {
            Lender::Object(stub) => {
                stub.call_target_wit((self.instance, self.target), method, args, chain)
                    .await
            }
            Lender::Worker(calls) => {
                let gone = || {
                    Error::new(
                        ErrorKind::GuestError,
                        "the RpcTarget or function is gone: the worker request that passed it has ended",
                    )
                };
                let (reply, answer) = oneshot::channel();
                let call = TargetCall {
                    target: self.target,
                    method,
                    args,
                    reply,
                };
                calls.send(call).map_err(|_| gone())?;
                match tokio::time::timeout(timeout, answer).await {
                    Ok(answer) => answer.map_err(|_| gone())?,
                    Err(_) => Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the worker's RpcTarget did not answer within the call timeout ({} ms)",
                            timeout.as_millis()
                        ),
                    )),
                }
            }
        }
    }
}

/// Every capability lent in the host.
#[derive(Default)]
pub(crate) struct Lending(Mutex<Table>);

#[derive(Default)]
struct Table {
    lent: HashMap<String, Lent>,
    /// The capabilities each instance lent, to end with it.
    by_instance: HashMap<u64, Vec<String>>,
}

impl Lending {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `lent`: its capability.
    pub(crate) fn lend(&self, lent: Lent) -> String {
        let capability = format!("{:032x}", rand::random::<u128>());
        let mut table = self.table();
        table
            .by_instance
            .entry(lent.instance)
            .or_default()
            .push(capability.clone());
        table.lent.insert(capability.clone(), lent);
        capability
    }

    /// What `capability` reaches, unless it was released or its instance
    /// is gone.
    pub(crate) fn get(&self, capability: &str) -> Option<Lent> {
        self.table().lent.get(capability).cloned()
    }

    /// A new capability for what `capability` reaches, if it still does.
    pub(crate) fn copy(&self, capability: &str) -> Option<String> {
        let lent = self.get(capability)?;
        Some(self.lend(lent))
    }

    /// Ends `capability`.
    pub(crate) fn release(&self, capability: &str) {
        let mut table = self.table();
        if let Some(lent) = table.lent.remove(capability)
            && let Some(list) = table.by_instance.get_mut(&lent.instance)
        {
            list.retain(|c| c != capability);
        }
    }

    /// Ends every capability instance `instance` lent: it is gone.
    pub(crate) fn forget(&self, instance: u64) {
        let mut table = self.table();
        for capability in table.by_instance.remove(&instance).unwrap_or_default() {
            table.lent.remove(&capability);
        }
    }
}
