//! The hub of `shared/design/hub-contract.md`, exactly: the methods every interop script and
//! our own tests call, and the fault-injection methods. The binary's `--help` shows the same
//! text:
//!
//! ```text
#![doc = include_str!("contract.txt")]
//! ```

use std::time::Duration;

use futures_util::stream;
use signalr_protocol::Payload;

use crate::hub::{Hub, HubContext, HubError, HubResult};

fn payload(ctx: &HubContext, value: &impl serde::Serialize) -> HubResult<Payload> {
    Ok(Payload::from_value(ctx.payload_format(), value)?)
}

/// Splits raw arguments into exactly `n` payloads, or fails naming the method.
fn exactly(method: &str, args: &signalr_protocol::Arguments, n: usize) -> HubResult<Vec<Payload>> {
    let parts = args.to_payloads()?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(HubError::new(format!(
            "Failed to invoke '{method}' due to an error on the server. Invocation provides {} argument(s) but target expects {n}.",
            parts.len()
        )))
    }
}

/// The contract hub.
// The contract, one method after the other: splitting it would only scatter the list.
#[allow(clippy::too_many_lines)]
pub fn contract_hub() -> Hub {
    Hub::new()
        .on_connected(|ctx| async move {
            if let Ok(id) = payload(&ctx, &ctx.connection_id()) {
                let _ = ctx.send_to_caller("welcome", vec![id]).await;
            }
        })
        .method_raw("Echo", |_ctx, args| async move {
            let mut parts = exactly("Echo", &args, 1)?;
            Ok(parts.pop())
        })
        .method("Add", |_ctx, (a, b): (i64, i64)| async move {
            a.checked_add(b)
                .ok_or_else(|| HubError::new("Add overflowed i64"))
        })
        .stream("Counter", |_ctx, (n, delay_ms): (i32, i32)| {
            let delay = Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0));
            stream::unfold(0, move |i| async move {
                if i >= n {
                    return None;
                }
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, HubError>(i), i + 1))
            })
        })
        .method("Sum", |ctx, (): ()| async move {
            let mut upload = ctx
                .take_upload(0)
                .ok_or_else(|| HubError::new("Sum expects one client-to-server stream"))?;
            let mut sum: i64 = 0;
            while let Some(item) = upload.next::<i64>().await {
                sum = sum
                    .checked_add(item?)
                    .ok_or_else(|| HubError::new("Sum overflowed i64"))?;
            }
            Ok(sum)
        })
        .method_raw("SendToCaller", |ctx, args| async move {
            let parts = exactly("SendToCaller", &args, 2)?;
            let method: String = parts[0].deserialize()?;
            ctx.send_to_caller(&method, vec![parts[1].clone()]).await?;
            Ok(Some(payload(&ctx, &"sent")?))
        })
        .method_raw("Broadcast", |ctx, args| async move {
            let parts = exactly("Broadcast", &args, 2)?;
            let method: String = parts[0].deserialize()?;
            let reached = ctx.send_to_all(&method, &parts[1..]).await?;
            Ok(Some(payload(&ctx, &reached)?))
        })
        .method("JoinGroup", |ctx, (group,): (String,)| async move {
            ctx.join_group(&group).await;
            Ok(group)
        })
        .method("LeaveGroup", |ctx, (group,): (String,)| async move {
            ctx.leave_group(&group).await;
            Ok(group)
        })
        .method_raw("SendToGroup", |ctx, args| async move {
            let parts = exactly("SendToGroup", &args, 3)?;
            let group: String = parts[0].deserialize()?;
            let method: String = parts[1].deserialize()?;
            ctx.send_to_group(&group, &method, &parts[2..]).await?;
            Ok(Some(payload(&ctx, &"sent")?))
        })
        .method_raw("SendToConnection", |ctx, args| async move {
            let parts = exactly("SendToConnection", &args, 3)?;
            let connection_id: String = parts[0].deserialize()?;
            let method: String = parts[1].deserialize()?;
            ctx.send_to_connection(&connection_id, &method, &parts[2..])
                .await?;
            Ok(Some(payload(&ctx, &"sent")?))
        })
        .method_raw("SendToUser", |ctx, args| async move {
            let parts = exactly("SendToUser", &args, 3)?;
            let user: String = parts[0].deserialize()?;
            let method: String = parts[1].deserialize()?;
            ctx.send_to_user(&user, &method, &parts[2..]).await?;
            Ok(Some(payload(&ctx, &"sent")?))
        })
        .method(
            "AddToGroup",
            |ctx, (connection_id, group): (String, String)| async move {
                ctx.change_group(true, &group, &connection_id).await?;
                Ok(group)
            },
        )
        .method(
            "RemoveFromGroup",
            |ctx, (connection_id, group): (String, String)| async move {
                ctx.change_group(false, &group, &connection_id).await?;
                Ok(group)
            },
        )
        .method_raw("AskConnection", |ctx, args| async move {
            let parts = exactly("AskConnection", &args, 3)?;
            let connection_id: String = parts[0].deserialize()?;
            let method: String = parts[1].deserialize()?;
            let answer = ctx
                .invoke_connection(&connection_id, &method, vec![parts[2].clone()])
                .await?;
            Ok(Some(answer))
        })
        .action("Fail", |_ctx, (message,): (String,)| async move {
            Err(HubError::new(message))
        })
        .method_raw("AskClient", |ctx, args| async move {
            let parts = exactly("AskClient", &args, 2)?;
            let method: String = parts[0].deserialize()?;
            let answer = ctx.invoke_caller(&method, vec![parts[1].clone()]).await?;
            Ok(Some(answer))
        })
        .action("NoResult", |_ctx, (): ()| async move { Ok(()) })
        .method("GetConnectionId", |ctx, (): ()| async move {
            Ok(ctx.connection_id().to_owned())
        })
        .method("GetServerName", |ctx, (): ()| async move {
            Ok(ctx.server_name().to_owned())
        })
        .method("GetInvocationHeaders", |ctx, (): ()| async move {
            Ok(ctx.headers().clone())
        })
        .method("Sequence", |ctx, (count,): (i32,)| async move {
            for i in 0..count {
                ctx.send_args_to_caller("seq", (i,)).await?;
            }
            Ok(count)
        })
        .action(
            "CloseMe",
            |ctx, (error, allow_reconnect): (Option<String>, bool)| async move {
                ctx.close_caller(error, allow_reconnect).await;
                Ok(())
            },
        )
        .action("AbortMe", |ctx, (): ()| async move {
            ctx.abort_caller();
            Ok(())
        })
        .action("Blackhole", |ctx, (ms,): (i32,)| async move {
            ctx.blackhole_caller(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
            Ok(())
        })
}
