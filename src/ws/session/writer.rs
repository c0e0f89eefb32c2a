//! The write half: queued messages written in batches with one system call, frames
//! serialized once, and close frames.

use super::*;

/// At most this many queued messages are written together.
pub(super) const BATCH: usize = 64;

/// The per-frame metrics, looked up in the registry once rather than for every frame (the
/// recorder is installed before the first socket opens).
struct Hot {
    frames_out: metrics::Counter,
    delivered_live: metrics::Counter,
    delivered_replayed: metrics::Counter,
    latency: metrics::Histogram,
}

static HOT: std::sync::LazyLock<Hot> = std::sync::LazyLock::new(|| Hot {
    frames_out: metrics::counter!("tickethub_frames_out_total"),
    delivered_live: metrics::counter!("tickethub_notifications_delivered_total", "replayed" => "false"),
    delivered_replayed: metrics::counter!("tickethub_notifications_delivered_total", "replayed" => "true"),
    latency: metrics::histogram!("tickethub_delivery_latency_seconds"),
});

/// Writes a queued message, and those queued behind it (up to [`BATCH`]), with one write to
/// the socket. If the hub kicks the socket while a write is stuck (the client stopped
/// reading), the write is abandoned and the connection dropped. `kicked` is the socket's one
/// wait for a kick: a kick wakes one waiter, so a second wait here could miss it.
pub(super) async fn outbound<
    K: std::future::Future<Output = tickethub_actors::connection::Disconnect>,
>(
    msg: Option<ConnectionMsg>,
    rx: &mut Outbound,
    write: &mut Writer,
    shared: &ConnShared,
    dialect: Dialect,
    cork: &Cork,
    mut kicked: std::pin::Pin<&mut K>,
) -> Result<Flow, WebSocketError> {
    let Some(msg) = msg else {
        return Ok(Flow::Close(
            CloseCode::ServiceRestart,
            "user actor restarted",
        ));
    };
    let batch = async {
        // Frames are held back to go out in one write only when there are several: a lone
        // frame goes straight to the socket (fastwebsockets writes a small one with one
        // system call), without a copy through the batch's buffer.
        let mut held = false;
        let mut hold = || {
            if !held {
                cork.hold();
                held = true;
            }
        };
        if shared.queued_frames() > 0 || msg.frames() > 1 {
            hold();
        }
        let mut bytes = 0;
        let mut next = Some(msg);
        let mut flow = Ok(Flow::Continue);
        let mut count = 0;
        // The highest seq in the batch: marked sent once the batch is on the socket.
        let mut sent = 0;
        while let Some(msg) = next.take() {
            bytes += msg.estimated_bytes();
            count += 1;
            flow = write_message(msg, write, &mut sent, dialect).await;
            if matches!(flow, Ok(Flow::Continue)) && count < BATCH {
                next = rx.try_recv();
                if next.is_some() {
                    hold();
                }
            }
        }
        cork.release();
        write.flush().await?;
        if sent > 0 {
            shared.mark_sent(sent);
        }
        Ok::<_, WebSocketError>((flow, bytes))
    };
    let (flow, bytes) = tokio::select! {
        biased;
        _ = &mut kicked => {
            cork.release();
            return Ok(Flow::Drop);
        }
        res = batch => res?,
    };
    shared.written(bytes);
    flow
}

/// Writes one queued message; `sent` rises to the highest seq written.
pub(super) async fn write_message(
    msg: ConnectionMsg,
    write: &mut Writer,
    sent: &mut i64,
    dialect: Dialect,
) -> Result<Flow, WebSocketError> {
    match msg {
        ConnectionMsg::Ping => {
            write
                .write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"")))
                .await?
        }
        ConnectionMsg::Close(reason) => return Ok(Flow::Close(reason.into(), "closed by the hub")),
        ConnectionMsg::Notification(n) => {
            send_bytes(write, dialect.notification_bytes(&n, false)).await?;
            *sent = (*sent).max(n.seq);
            HOT.delivered_live.increment(1);
            let latency = (Utc::now() - n.created_at)
                .num_microseconds()
                .unwrap_or(0)
                .max(0);
            HOT.latency.record(latency as f64 / 1e6);
        }
        ConnectionMsg::Replay(replay) => {
            let Replay {
                notifications,
                remaining,
                last_seq,
            } = *replay;
            if remaining > 0 {
                send_value(
                    write,
                    &json!({ "type": "replay_truncated", "remaining": remaining }),
                )
                .await?;
            }
            for n in &notifications {
                send_bytes(write, dialect.notification_bytes(n, true)).await?;
                *sent = (*sent).max(n.seq);
            }
            HOT.delivered_replayed.increment(notifications.len() as u64);
            send_value(
                write,
                &json!({ "type": "replay_complete", "count": notifications.len(), "last_seq": last_seq }),
            )
            .await?;
        }
        ConnectionMsg::Updated(update) => send_value(write, &update_frame(*update)).await?,
        ConnectionMsg::Room(frames) => {
            // Rendered once for every socket the frame goes to.
            for frame in frames.iter() {
                let text = frame.text(|event| {
                    serde_json::to_vec(&wire::room_event(event)).expect("JSON values serialize")
                });
                HOT.frames_out.increment(1);
                write
                    .write_frame(Frame::text(Payload::Borrowed(text)))
                    .await?;
            }
        }
    }
    Ok(Flow::Continue)
}

/// The frame telling a socket that its inbox changed elsewhere.
pub(crate) fn update_frame(update: Update) -> Value {
    match update {
        Update::Read { id, is_read } => {
            json!({ "type": "notification_updated", "id": id, "is_read": is_read })
        }
        Update::Deleted { id } => {
            json!({ "type": "notification_updated", "id": id, "deleted": true })
        }
        Update::AllDeleted { count, .. } => {
            json!({ "type": "notifications_cleared", "count": count })
        }
        Update::AllRead {
            count,
            notification_type,
            ticket,
            ..
        } => json!({
            "type": "all_marked_read",
            "count": count,
            "notification_type": notification_type,
            "ticket": ticket,
        }),
    }
}

pub(super) async fn send_value(write: &mut Writer, value: &Value) -> Result<(), WebSocketError> {
    send_bytes(
        write,
        serde_json::to_vec(value).expect("JSON values serialize"),
    )
    .await
}

pub(super) async fn send_bytes(write: &mut Writer, bytes: Vec<u8>) -> Result<(), WebSocketError> {
    HOT.frames_out.increment(1);
    write.write_frame(Frame::text(Payload::Owned(bytes))).await
}

pub(super) async fn send(
    write: &mut Writer,
    frame: &ServerFrame<'_>,
) -> Result<(), WebSocketError> {
    HOT.frames_out.increment(1);
    write
        .write_frame(Frame::text(Payload::Owned(frame.to_json())))
        .await
}

/// Writes a close frame. Boxed: a session awaits it from several places, and each await of an
/// inline future would size every idle socket's task by it.
pub(super) fn close<'a>(
    write: &'a mut Writer,
    code: CloseCode,
    reason: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), WebSocketError>> + Send + 'a>> {
    Box::pin(async move {
        // A peer that stopped reading must not hold the task forever.
        tokio::time::timeout(
            Duration::from_secs(2),
            write.write_frame(Frame::close(code.code(), reason.as_bytes())),
        )
        .await
        .unwrap_or(Ok(()))
    })
}
