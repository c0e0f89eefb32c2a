//! A socket's opening: the upgrade, the attach to its user actor or room, and the greeting
//! with the replay; boxed and freed once the socket is open.

use super::*;

impl Session {
    /// Completes the upgrade, attaches the socket to its owner and greets the client; `None`
    /// when the socket was closed instead.
    pub(super) async fn open(self: Box<Self>) -> Option<Open> {
        let this = *self;
        let mut ws = match this.upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return None;
            }
        };
        // The limit is inclusive: a message of exactly the limit is accepted (the library
        // refuses a frame whose length reaches the number it is given).
        ws.set_max_message_size(this.state.ws.max_message_bytes + 1);
        ws.set_auto_pong(false);
        ws.set_auto_close(false);
        // A socket waiting for its next frame holds no read buffer (8 KiB otherwise, most of
        // an idle socket's memory); `vendor/fastwebsockets/PATCHES.md`.
        ws.set_release_idle_buffer(true);
        let cork = Cork::default();
        let (read, mut write) = ws.split(|io| {
            let (read, write) = tokio::io::split(io);
            (read, Batched::new(write, cork.clone()))
        });

        let (user, token) = match this.user {
            Ok(pair) => pair,
            Err(e) => {
                let _ = close(&mut write, CloseCode::Unauthorized, &e.to_string()).await;
                return None;
            }
        };
        if let Some(Err(())) = this.room {
            // The same answer whether the project exists or not.
            let _ = close(
                &mut write,
                CloseCode::Forbidden,
                "Not a member of this project.",
            )
            .await;
            return None;
        }
        let ws_settings = this.state.ws.clone();
        let Some(slot) = ws_settings.take_slot(user.id) else {
            metrics::counter!("tickethub_throttled_total", "limit" => "sockets_per_user")
                .increment(1);
            let _ = close(
                &mut write,
                CloseCode::Policy,
                "Too many sockets for this user.",
            )
            .await;
            return None;
        };
        let (conn, mut rx) = ConnHandle::new(
            ConnId(ws_settings.next_conn_id.fetch_add(1, Ordering::Relaxed)),
            ws_settings.outbound_queue,
            ws_settings.outbound_queue_bytes,
        );
        let shared = conn.shared.clone();
        let conn_id = conn.id;
        let resume = match this.last_seq {
            Some(seq) => Resume::After(seq),
            None => Resume::Unacknowledged,
        };
        // With the user's newest seq for the greeting, read by the actor as it attaches.
        let joined = match this.room {
            _ if this.echo => Ok((
                Owner::Echo {
                    _queue: Box::new(conn),
                },
                0,
            )),
            Some(Ok((project, kind))) => this
                .state
                .hub
                .join_room(project, &user, kind, this.diff, conn)
                .await
                .map(|room| (Owner::Room(room, kind, project), 0)),
            _ => this
                .state
                .hub
                .attach(user.id, conn, resume, this.hint)
                .await
                .map(|a| (Owner::User(a.actor), a.last_seq)),
        };
        let (owner, newest) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                // An actor that stopped because the user's sessions ended: the socket hears why.
                if this.state.hub.ended_since(user.id, this.authenticated_at) {
                    let _ = close(
                        &mut write,
                        CloseCode::Unauthorized,
                        "Token has been revoked.",
                    )
                    .await;
                    return None;
                }
                tracing::warn!(user_id = user.id.0, error = %e, "cannot attach socket");
                let _ = close(&mut write, CloseCode::GoingAway, "hub unavailable").await;
                return None;
            }
        };
        tracing::debug!(user_id = user.id.0, conn = conn_id.0, "socket attached");
        crate::telemetry::CONNECTIONS.open.increment(1.0);
        crate::telemetry::CONNECTIONS.total.increment(1);

        // The greeting is the last use of the user's profile: the socket keeps only its id and
        // role, not the strings, for the rest of its life.
        let hello = matches!(owner, Owner::User(_)).then(|| ServerFrame::ConnectionEstablished {
            message: format!("Connected successfully as {}", user.username),
            user_id: user.id.0,
            last_seq: newest,
        });
        let (user_id, role) = (user.id, user.role);
        let commands = this.state.limits.command_limiter();
        let ctx = Ctx {
            state: this.state,
            user_id,
            role,
            token,
            conn_id,
            warned: false,
            fragments: None,
            dialect: this.dialect,
            owner,
            commands,
            refused: 0,
        };
        // The user's sessions may have ended between the handshake's read of the user and
        // the attach: then the socket never saw the closing, and closes now.
        let ended = ctx.state.hub.ended_since(user_id, this.authenticated_at);
        let outcome = match (hello, shared.kicked()) {
            _ if ended => Ok(Flow::Close(
                CloseCode::Unauthorized,
                "Token has been revoked.",
            )),
            // Kicked already (its actor restarted, say): closed with the reason, as the loop
            // would, rather than dropped by the batch below.
            (_, Some(reason)) => Ok(Flow::Close(reason.into(), "closed by the hub")),
            // The greeting and the replay the actor queued as it attached go out in one write.
            (Some(hello), None) => {
                cork.hold();
                match send(&mut write, &hello).await {
                    Ok(()) => match rx.try_recv() {
                        Some(replay) => {
                            let kicked = pin!(shared.until_kicked());
                            let dialect = ctx.dialect;
                            outbound(
                                Some(replay),
                                &mut rx,
                                &mut write,
                                &shared,
                                dialect,
                                &cork,
                                kicked,
                            )
                            .await
                        }
                        None => {
                            cork.release();
                            write.flush().await.map(|_| Flow::Continue)
                        }
                    },
                    Err(e) => {
                        cork.release();
                        Err(e)
                    }
                }
            }
            // A room greets its sockets itself, through the queue.
            (None, None) => Ok(Flow::Continue),
        };

        Some(Open {
            read,
            write,
            rx,
            shared,
            cork,
            ctx,
            outcome,
            ws_settings,
            slot,
            connection: this.connection,
        })
    }
}
