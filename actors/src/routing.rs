//! Who hears about an event, and on which channels: seed 001's table as data.
//!
//! [`RoutingTable::default`] is the contract's table; a deployment can replace any event's
//! route. [`recipients`] and [`channels_for`] are pure.

use std::collections::HashMap;

use crate::domain::{User, UserId};
pub use crate::event::{Audience, Channel, EventType, Reach};

/// Who hears about one event type, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The groups that receive it.
    pub audiences: Vec<Audience>,
    /// The channels it goes out on (websocket is always stored regardless).
    pub channels: Vec<Channel>,
    /// With `push` among the channels: how long the push waits for a client to acknowledge or
    /// read the notification, going out only if none did (`push = { unless_seen_within }`).
    pub push_unless_seen: Option<std::time::Duration>,
}

/// The routing of every event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingTable {
    routes: HashMap<EventType, Route>,
    escalations: Vec<crate::policy::Policy>,
    batches: HashMap<EventType, std::time::Duration>,
}

impl Default for RoutingTable {
    /// Seed 001's table.
    fn default() -> Self {
        use Audience::*;
        let (email, whatsapp, websocket) = (Channel::Email, Channel::Whatsapp, Channel::Websocket);
        let all = vec![email, whatsapp, websocket];
        let table = [
            (EventType::TicketCreated, vec![Admins], all.clone()),
            (EventType::TicketOpened, vec![Creator], all.clone()),
            (EventType::TicketAssigned, vec![NewlyAssigned], all.clone()),
            (EventType::WorkStarted, vec![Creator], all.clone()),
            (EventType::WorkFinished, vec![Creator, Admins], all),
            (
                EventType::TicketApproved,
                vec![Admins, Assignees],
                vec![websocket, whatsapp],
            ),
            (
                EventType::TicketRejected,
                vec![Admins, Assignees],
                vec![websocket, whatsapp],
            ),
            (
                EventType::CommentAdded,
                vec![Creator, Assignees],
                vec![websocket, email],
            ),
            (
                EventType::TicketUpdated,
                vec![Creator, Assignees, Admins],
                vec![websocket, email],
            ),
            (
                EventType::TicketMentioned,
                vec![Mentioned],
                vec![websocket, email],
            ),
            (
                EventType::UserRegistered,
                vec![SuperAdmins],
                vec![websocket, email],
            ),
        ];
        RoutingTable {
            routes: table
                .into_iter()
                .map(|(e, audiences, channels)| {
                    (
                        e,
                        Route {
                            audiences,
                            channels,
                            push_unless_seen: None,
                        },
                    )
                })
                .collect(),
            escalations: Vec::new(),
            batches: HashMap::new(),
        }
    }
}

impl RoutingTable {
    /// The types with a batch window of their own (`batch = "5m"`; zero: never batched).
    pub fn batches(&self) -> &HashMap<EventType, std::time::Duration> {
        &self.batches
    }

    /// Gives a type a batch window of its own.
    pub fn set_batch(&mut self, event: EventType, window: std::time::Duration) {
        self.batches.insert(event, window);
    }

    /// The escalation policies, in the order they are tried.
    pub fn escalations(&self) -> &[crate::policy::Policy] {
        &self.escalations
    }

    /// Adds an escalation policy after the others.
    pub fn add_escalation(&mut self, policy: crate::policy::Policy) {
        self.escalations.push(policy);
    }

    /// The route of an event type; custom types have none (their recipients are explicit).
    pub fn route(&self, event: &EventType) -> Option<&Route> {
        self.routes.get(event)
    }

    /// The event types that have a route.
    pub fn routed(&self) -> impl Iterator<Item = &EventType> {
        self.routes.keys()
    }

    /// Replaces one event type's route.
    pub fn set(&mut self, event: EventType, route: Route) {
        self.routes.insert(event, route);
    }
}

/// The people an event concerns, for resolving audiences.
#[derive(Clone, Debug, Default)]
pub struct Parties<'a> {
    /// Who acted; never notified of their own action.
    pub actor: Option<UserId>,
    /// The ticket's creator.
    pub creator: Option<UserId>,
    /// The ticket's assignees after the change.
    pub assignees: &'a [UserId],
    /// Assignees added by the change.
    pub newly_assigned: &'a [UserId],
    /// Active admins.
    pub admins: &'a [UserId],
    /// Active super admins.
    pub super_admins: &'a [UserId],
    /// The people the change's text mentions, who may see the ticket.
    pub mentioned: &'a [UserId],
}

/// The recipients of an event: the route's audiences, deduplicated, in order of first
/// appearance, without the actor.
pub fn recipients(route: &Route, parties: &Parties<'_>) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    for audience in &route.audiences {
        let ids: &[UserId] = match audience {
            Audience::Admins => parties.admins,
            Audience::SuperAdmins => parties.super_admins,
            Audience::Creator => parties.creator.as_slice(),
            Audience::Assignees => parties.assignees,
            Audience::NewlyAssigned => parties.newly_assigned,
            Audience::Mentioned => parties.mentioned,
        };
        for id in ids {
            if Some(*id) != parties.actor && !out.contains(id) {
                out.push(*id);
            }
        }
    }
    out
}

/// A user's on/off switches: `(notification type or "*", channel) → enabled`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    /// Per notification type (or `*`), the switch of each channel that has one.
    switches: HashMap<String, HashMap<Channel, bool>>,
}

impl Preferences {
    /// Sets one switch; `notification_type` may be `*` for every type.
    pub fn set(&mut self, notification_type: &str, channel: Channel, enabled: bool) {
        self.switches
            .entry(notification_type.to_owned())
            .or_default()
            .insert(channel, enabled);
    }

    /// Whether a channel is on for a type: the specific switch, else the `*` switch, else on.
    /// Looks up without allocating.
    pub fn allows(&self, event: &EventType, channel: Channel) -> bool {
        let switch = |kind: &str| {
            self.switches
                .get(kind)
                .and_then(|c| c.get(&channel))
                .copied()
        };
        switch(event.as_str())
            .or_else(|| switch("*"))
            .unwrap_or(true)
    }

    /// Every switch, sorted.
    pub fn entries(&self) -> Vec<(String, Channel, bool)> {
        let mut v: Vec<_> = self
            .switches
            .iter()
            .flat_map(|(t, cs)| cs.iter().map(move |(c, e)| (t.clone(), *c, *e)))
            .collect();
        v.sort();
        v
    }
}

/// Why a channel does not reach a user for an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreached {
    /// The user has no address for it.
    NoAddress,
    /// The provider refused the user's address for good (an SMS number that is not a valid
    /// mobile number, or whose owner unsubscribed); it is used again once the user sets one.
    InvalidAddress,
    /// The user switched it off for this type.
    SwitchedOff,
    /// The user typed the address for themselves and has not proved it is theirs yet: only
    /// its verification message goes to it.
    Unverified,
    /// The channel has no per-user address (the in-app record, webhooks).
    NotPersonal,
}

impl Unreached {
    /// A short machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreached::NoAddress => "no_address",
            Unreached::InvalidAddress => "invalid_address",
            Unreached::SwitchedOff => "switched_off",
            Unreached::Unverified => "unverified",
            Unreached::NotPersonal => "not_personal",
        }
    }

    /// A sentence for people.
    pub fn explain(self, channel: Channel) -> String {
        match self {
            Unreached::NoAddress => format!("the user has no {} address", channel.as_str()),
            Unreached::InvalidAddress => format!(
                "the provider refused the user's {} address for good; it is used again once they set a number",
                channel.as_str()
            ),
            Unreached::SwitchedOff => {
                format!("the user switched {} off for this type", channel.as_str())
            }
            Unreached::Unverified => format!(
                "the user's {} address is not verified yet",
                channel.as_str()
            ),
            Unreached::NotPersonal => format!("{} has no per-user address", channel.as_str()),
        }
    }
}

/// The address a channel reaches `user` at for `event`, or why it does not.
pub fn reach(
    channel: Channel,
    event: &EventType,
    user: &User,
    prefs: &Preferences,
) -> Result<String, Unreached> {
    let (address, verified) = match channel.reach() {
        Reach::InApp | Reach::Deployment => return Err(Unreached::NotPersonal),
        // Queued per registered device when committed, at once unless a wait is given.
        Reach::Devices | Reach::Carrier => {
            if !prefs.allows(event, Channel::Push) {
                return Err(Unreached::SwitchedOff);
            }
            return Ok(push_address(None, &Channel::CARRIERS));
        }
        Reach::Personal => {
            let address = user.address(channel).ok_or(Unreached::NoAddress)?;
            if address.invalid_at.is_some() {
                return Err(Unreached::InvalidAddress);
            }
            (&address.address, address.verified_at)
        }
    };
    if verified.is_none() {
        return Err(Unreached::Unverified);
    }
    if !prefs.allows(event, channel) {
        return Err(Unreached::SwitchedOff);
    }
    Ok(address.clone())
}

/// The address of a `push` delivery, before the commit queues it per device: how long it waits
/// for the notification to be seen, in whole seconds (`0`: it goes at once), and the carriers
/// this hub sends on, whose devices get it: `30:webpush,fcm`.
pub fn push_address(
    unless_seen_within: Option<std::time::Duration>,
    carriers: &[Channel],
) -> String {
    let carriers: Vec<&str> = carriers.iter().map(|c| c.as_str()).collect();
    format!(
        "{}:{}",
        unless_seen_within.map_or(0, |d| d.as_secs()),
        carriers.join(",")
    )
}

/// The wait a `push` delivery's address names (see [`push_address`]).
pub fn push_wait(address: &str) -> std::time::Duration {
    let secs = address.split(':').next().unwrap_or_default();
    std::time::Duration::from_secs(secs.parse().unwrap_or(0))
}

/// The carriers a `push` delivery's address names (see [`push_address`]).
pub fn push_carriers(address: &str) -> Vec<Channel> {
    address
        .split_once(':')
        .map(|(_, carriers)| {
            Channel::CARRIERS
                .into_iter()
                .filter(|c| carriers.split(',').any(|n| n == c.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// `address` with its wait set to `wait`.
pub fn push_held(address: &str, wait: std::time::Duration) -> String {
    push_address(Some(wait), &push_carriers(address))
}

/// The outbound channels (email, WhatsApp, SMS, push) one recipient gets for an event, with the address
/// for each: a channel is used only if the route names it, the user has the address and has
/// not switched it off. The in-app record is always stored and is not listed here.
pub fn channels_for(
    route_channels: &[Channel],
    event: &EventType,
    user: &User,
    prefs: &Preferences,
) -> Vec<(Channel, String)> {
    route_channels
        .iter()
        .filter_map(|c| reach(*c, event, user, prefs).ok().map(|a| (*c, a)))
        .collect()
}

/// Why a user was not a recipient of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftOut {
    /// The type has no route, or its route names no audience (`recipients = []`).
    NoRoute,
    /// The user is not a member of the ticket's project, and no audience of the route named
    /// them.
    NotAMember,
    /// No audience of the route includes the user (their role or part in the ticket is not
    /// routed).
    NotRouted,
    /// The user took the action themselves.
    Actor,
    /// The user is deactivated.
    Inactive,
}

impl LeftOut {
    /// A short machine name.
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftOut::NoRoute => "no_route",
            LeftOut::NotAMember => "not_a_member",
            LeftOut::NotRouted => "not_routed",
            LeftOut::Actor => "actor",
            LeftOut::Inactive => "inactive",
        }
    }
}

/// Replays the routing decision of one event for one user: the audiences of the route that
/// named them, or why they were left out. `member` says whether they belong to the ticket's
/// project.
pub fn why(
    route: Option<&Route>,
    parties: &Parties<'_>,
    user: &User,
    member: bool,
) -> Result<Vec<Audience>, LeftOut> {
    // A route emptied by the routing file (`recipients = []`) names nobody, as none would.
    let route = route
        .filter(|r| !r.audiences.is_empty())
        .ok_or(LeftOut::NoRoute)?;
    let named: Vec<Audience> = route
        .audiences
        .iter()
        .copied()
        .filter(|a| {
            let ids: &[UserId] = match a {
                Audience::Admins => parties.admins,
                Audience::SuperAdmins => parties.super_admins,
                Audience::Creator => parties.creator.as_slice(),
                Audience::Assignees => parties.assignees,
                Audience::NewlyAssigned => parties.newly_assigned,
                Audience::Mentioned => parties.mentioned,
            };
            ids.contains(&user.id)
        })
        .collect();
    if named.is_empty() {
        return Err(if member || parties.admins.contains(&user.id) {
            LeftOut::NotRouted
        } else {
            LeftOut::NotAMember
        });
    }
    if parties.actor == Some(user.id) {
        return Err(LeftOut::Actor);
    }
    if !user.is_active {
        return Err(LeftOut::Inactive);
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    const A1: UserId = UserId(1);
    const A2: UserId = UserId(2);
    const D1: UserId = UserId(3);
    const D2: UserId = UserId(4);
    const C: UserId = UserId(5);

    fn parties<'a>(actor: UserId, assignees: &'a [UserId], new: &'a [UserId]) -> Parties<'a> {
        Parties {
            actor: Some(actor),
            creator: Some(C),
            assignees,
            newly_assigned: new,
            admins: &[A1, A2],
            super_admins: &[A1],
            mentioned: &[D2],
        }
    }

    /// Seed 001's table, event by event, with the actor left out.
    #[test]
    fn the_default_table_is_seed_001() {
        let t = RoutingTable::default();
        let who = |e: EventType, p: Parties<'_>| recipients(t.route(&e).unwrap(), &p);
        assert_eq!(
            who(EventType::TicketCreated, parties(C, &[], &[])),
            vec![A1, A2]
        );
        assert_eq!(who(EventType::TicketOpened, parties(A1, &[], &[])), vec![C]);
        assert_eq!(
            who(EventType::TicketAssigned, parties(A1, &[D1, D2], &[D2])),
            vec![D2]
        );
        assert_eq!(
            who(EventType::WorkStarted, parties(D1, &[D1], &[])),
            vec![C]
        );
        assert_eq!(
            who(EventType::WorkFinished, parties(D1, &[D1], &[])),
            vec![C, A1, A2]
        );
        assert_eq!(
            who(EventType::TicketApproved, parties(C, &[D1, D2], &[])),
            vec![A1, A2, D1, D2]
        );
        assert_eq!(
            who(EventType::TicketRejected, parties(C, &[D1], &[])),
            vec![A1, A2, D1]
        );
        assert_eq!(
            who(EventType::CommentAdded, parties(D1, &[D1, D2], &[])),
            vec![C, D2]
        );
        assert_eq!(
            who(EventType::CommentAdded, parties(A2, &[D1], &[])),
            vec![C, D1]
        );
        assert_eq!(
            who(
                EventType::UserRegistered,
                Parties {
                    actor: Some(C),
                    ..parties(C, &[], &[])
                }
            ),
            vec![A1]
        );

        use crate::event::channel::*;
        let ch = |e: EventType| {
            let mut c = t.route(&e).unwrap().channels.clone();
            c.sort();
            c
        };
        // Sorted by name.
        assert_eq!(
            ch(EventType::TicketCreated),
            vec![Email, Websocket, Whatsapp]
        );
        assert_eq!(ch(EventType::TicketApproved), vec![Websocket, Whatsapp]);
        assert_eq!(ch(EventType::CommentAdded), vec![Email, Websocket]);
        assert_eq!(ch(EventType::UserRegistered), vec![Email, Websocket]);
    }

    #[test]
    fn an_admin_acting_is_not_told_of_their_own_action() {
        let t = RoutingTable::default();
        let r = recipients(
            t.route(&EventType::WorkFinished).unwrap(),
            &Parties {
                actor: Some(A1),
                ..parties(A1, &[], &[])
            },
        );
        assert_eq!(r, vec![C, A2]);
    }

    #[test]
    fn routes_can_be_overridden() {
        let mut t = RoutingTable::default();
        t.set(
            EventType::TicketOpened,
            Route {
                audiences: vec![Audience::Admins, Audience::Creator],
                channels: vec![Channel::Websocket],
                push_unless_seen: None,
            },
        );
        let r = recipients(
            t.route(&EventType::TicketOpened).unwrap(),
            &parties(A1, &[], &[]),
        );
        assert_eq!(r, vec![A2, C]);
    }

    #[test]
    fn channels_need_an_address_and_an_open_switch() {
        let mut user = User {
            id: C,
            username: "c".into(),
            display_name: String::new(),
            addresses: vec![crate::domain::Address::verified(
                Channel::Email,
                "c@example.test",
            )],
            role: Role::Client,
            is_superuser: false,
            is_active: true,
            token_version: 0,
            created_at: chrono::Utc::now(),
        };
        let all = [Channel::Email, Channel::Whatsapp, Channel::Websocket];
        let mut prefs = Preferences::default();
        let e = EventType::TicketOpened;
        assert_eq!(
            channels_for(&all, &e, &user, &prefs),
            vec![(Channel::Email, "c@example.test".into())]
        );
        user.addresses.push(crate::domain::Address::verified(
            Channel::Whatsapp,
            "+15551234567",
        ));
        assert_eq!(channels_for(&all, &e, &user, &prefs).len(), 2);
        prefs.set("*", Channel::Email, false);
        assert_eq!(
            channels_for(&all, &e, &user, &prefs),
            vec![(Channel::Whatsapp, "+15551234567".into())]
        );
        prefs.set("ticket_opened", Channel::Email, true);
        assert_eq!(channels_for(&all, &e, &user, &prefs).len(), 2);
        assert_eq!(
            channels_for(&[Channel::Websocket], &e, &user, &prefs),
            vec![]
        );

        // SMS goes to the phone number, not the WhatsApp one; a number the provider refused
        // is no address until it is set again, and SMS has its own switch.
        assert_eq!(
            reach(Channel::Sms, &e, &user, &prefs),
            Err(Unreached::NoAddress)
        );
        user.addresses.push(crate::domain::Address::verified(
            Channel::Sms,
            "+15557654321",
        ));
        fn sms(user: &mut User) -> &mut crate::domain::Address {
            user.addresses
                .iter_mut()
                .find(|a| a.channel == Channel::Sms)
                .unwrap()
        }
        assert_eq!(
            reach(Channel::Sms, &e, &user, &prefs),
            Ok("+15557654321".into())
        );
        sms(&mut user).invalid_at = Some(chrono::Utc::now());
        assert_eq!(
            reach(Channel::Sms, &e, &user, &prefs),
            Err(Unreached::InvalidAddress)
        );
        assert_eq!(Unreached::InvalidAddress.as_str(), "invalid_address");
        assert!(Unreached::InvalidAddress
            .explain(Channel::Sms)
            .contains("refused the user's sms address"));
        sms(&mut user).invalid_at = None;
        // A number its owner has not proved is theirs gets nothing (but its verification).
        sms(&mut user).verified_at = None;
        assert_eq!(
            reach(Channel::Sms, &e, &user, &prefs),
            Err(Unreached::Unverified)
        );
        sms(&mut user).verified_at = Some(chrono::Utc::now());
        prefs.set("*", Channel::Sms, false);
        assert_eq!(
            reach(Channel::Sms, &e, &user, &prefs),
            Err(Unreached::SwitchedOff)
        );
        assert_eq!(
            channels_for(&[Channel::Sms, Channel::Whatsapp], &e, &user, &prefs),
            vec![(Channel::Whatsapp, "+15551234567".into())]
        );
        prefs.set("ticket_opened", Channel::Sms, true);
        assert_eq!(
            channels_for(&[Channel::Sms], &e, &user, &prefs),
            vec![(Channel::Sms, "+15557654321".into())]
        );
        assert_eq!("sms".parse::<Channel>(), Ok(Channel::Sms));
        assert_eq!(Channel::stored("sms"), Some(Channel::Sms));
        assert_eq!(Channel::Sms.queues(), &[Channel::Sms]);
        assert!(Channel::outbound().contains(&Channel::Sms));
    }

    #[test]
    fn event_names_round_trip() {
        for e in EventType::BUILT_IN {
            assert_eq!(e.as_str().parse::<EventType>().unwrap(), e);
        }
        assert_eq!(
            "deploy_done".parse::<EventType>().unwrap(),
            EventType::Custom("deploy_done".into())
        );
        assert_eq!(EventType::TicketCreated.display(), "Ticket created");
    }
}
