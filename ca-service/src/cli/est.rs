//! `ca-service est pending|approve|reject`: EST enrollments that wait for an operator
//! (profiles with `approval = "manual"`). An approved request's certificate goes to
//! the station on its next retry.

use anyhow::bail;

use super::{Ctx, EstCommand};
use crate::store::RequestStatus;

pub(super) async fn run(ctx: Ctx, command: EstCommand) -> anyhow::Result<()> {
    let (id, approve) = match command {
        EstCommand::Pending { all } => return pending(&ctx, all).await,
        EstCommand::Approve { id } => (id, true),
        EstCommand::Reject { id } => (id, false),
    };
    if id.is_empty() {
        bail!("empty request id");
    }
    let action = if approve { "est.approve" } else { "est.reject" };
    let audit = crate::audit::AuditEvent::success(&ctx.actor, action, format!("request:{id}"));
    ctx.store.decide_enrollment_request(&id, approve, &ctx.actor, audit).await?;
    println!("request {id} {}", if approve { "approved" } else { "rejected" });
    Ok(())
}

async fn pending(ctx: &Ctx, all: bool) -> anyhow::Result<()> {
    let status = if all { None } else { Some(RequestStatus::Pending) };
    for r in ctx.store.list_enrollment_requests(status).await? {
        println!(
            "{}  {:<9} device {:<20} profile {:<12} from {}",
            r.id,
            r.status.as_str(),
            r.device_id,
            r.profile,
            r.requester
        );
    }
    Ok(())
}
