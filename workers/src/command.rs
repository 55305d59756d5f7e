//! Sending a command to an order on behalf of a worker, with the outcome mapped to what the
//! runtime understands: a conflict or a store failure is retried; a refusal is permanent.

use orderflow_domain::{OrderCommand, OrderError};
use orderflow_store::{CommandError, CommandMetadata, EventEnvelope, OrderStore};
use uuid::Uuid;

use orderflow_bus::handler::HandlerError;

/// How often a worker's command is retried when another command changed the order at once.
pub(crate) const COMMAND_ATTEMPTS: u32 = 8;

/// Sends `command` to `order_id`, caused by `event`, as `actor`.
///
/// # Errors
/// [`HandlerError::Retry`] on a conflict or a store failure, [`HandlerError::GiveUp`] when
/// the aggregate refuses; `Ok(Err(refusal))` is never returned, see [`send_allowing`].
pub(crate) async fn send(
    store: &OrderStore,
    event: &EventEnvelope,
    actor: &str,
    order_id: Uuid,
    command: OrderCommand,
) -> Result<(), HandlerError> {
    match send_allowing(store, event, actor, order_id, command).await? {
        Ok(()) => Ok(()),
        Err(refusal) => Err(HandlerError::give_up(format!(
            "the order refused: {refusal}"
        ))),
    }
}

/// Like [`send`], but hands a refusal by the aggregate back to the caller to decide.
///
/// # Errors
/// [`HandlerError::Retry`] on a conflict or a store failure.
pub(crate) async fn send_allowing(
    store: &OrderStore,
    event: &EventEnvelope,
    actor: &str,
    order_id: Uuid,
    command: OrderCommand,
) -> Result<Result<(), OrderError>, HandlerError> {
    let name = command.name();
    let metadata = CommandMetadata::caused_by(event, actor);
    match store
        .execute_retrying(order_id, command, &metadata, COMMAND_ATTEMPTS)
        .await
    {
        Ok(()) => Ok(Ok(())),
        Err(CommandError::Domain(refusal)) => Ok(Err(refusal)),
        Err(
            error @ (CommandError::Conflict
            | CommandError::Store(_)
            | CommandError::Unavailable(_)
            | CommandError::OutcomeUnknown(_)),
        ) => Err(HandlerError::retry(format!(
            "{name} for order {order_id}: {error}"
        ))),
    }
}

/// Like [`send_allowing`] for many commands at once, with one read and one append in all
/// ([`OrderStore::execute_all`]); one result per command, in order.
pub(crate) async fn send_all_allowing(
    store: &OrderStore,
    actor: &str,
    commands: Vec<(&EventEnvelope, Uuid, OrderCommand)>,
) -> Vec<Result<Result<(), OrderError>, HandlerError>> {
    let names: Vec<(&'static str, Uuid)> = commands
        .iter()
        .map(|(_, order_id, command)| (command.name(), *order_id))
        .collect();
    let batch = commands
        .into_iter()
        .map(|(event, order_id, command)| {
            (order_id, command, CommandMetadata::caused_by(event, actor))
        })
        .collect();
    store
        .execute_all(batch, COMMAND_ATTEMPTS)
        .await
        .into_iter()
        .zip(names)
        .map(|(result, (name, order_id))| match result {
            Ok(()) => Ok(Ok(())),
            Err(CommandError::Domain(refusal)) => Ok(Err(refusal)),
            Err(
                error @ (CommandError::Conflict
                | CommandError::Store(_)
                | CommandError::Unavailable(_)
                | CommandError::OutcomeUnknown(_)),
            ) => Err(HandlerError::retry(format!(
                "{name} for order {order_id}: {error}"
            ))),
        })
        .collect()
}
