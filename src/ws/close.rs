//! WebSocket close codes, as the product contract names them.

use tickethub_actors::connection::Disconnect;

/// A close code the hub sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: normal closure (an answer to the client's own close).
    Normal,
    /// 1001: the hub is shutting down; reconnect and replay.
    GoingAway,
    /// 1002: the client broke RFC 6455 (a stray continuation, a malformed close frame …).
    ProtocolError,
    /// 1003: a binary frame arrived; the protocol is JSON text.
    Unsupported,
    /// 1007: a text message that is not UTF-8.
    InvalidData,
    /// 1009: a message over the size limit arrived.
    TooBig,
    /// 1011: the hub hit an internal error.
    InternalError,
    /// 1012: the user's actor restarted; reconnect.
    ServiceRestart,
    /// 4000: nothing was heard from the client within the idle timeout.
    IdleTimeout,
    /// 4001: missing, invalid or expired token.
    Unauthorized,
    /// 4003: forbidden.
    Forbidden,
    /// 4008: policy: rate limit or slow consumer.
    Policy,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidData => 1007,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::IdleTimeout => 4000,
            CloseCode::Unauthorized => 4001,
            CloseCode::Forbidden => 4003,
            CloseCode::Policy => 4008,
        }
    }
}

impl From<Disconnect> for CloseCode {
    fn from(reason: Disconnect) -> Self {
        match reason {
            Disconnect::Shutdown => CloseCode::GoingAway,
            Disconnect::SlowConsumer => CloseCode::Policy,
            Disconnect::Idle => CloseCode::IdleTimeout,
            Disconnect::ActorRestart => CloseCode::ServiceRestart,
            Disconnect::Forbidden => CloseCode::Forbidden,
            Disconnect::Deactivated => CloseCode::Unauthorized,
        }
    }
}
