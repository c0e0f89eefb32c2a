//! The status machine, its permissions and edits, action by action.
use super::*;
use crate::event::EventType as E;
use TicketStatus as S;

const ADMIN: Principal = Principal {
    id: UserId(1),
    role: Role::Admin,
};
const DEV: Principal = Principal {
    id: UserId(2),
    role: Role::Developer,
};
const OTHER_DEV: Principal = Principal {
    id: UserId(3),
    role: Role::Developer,
};
const CLIENT: Principal = Principal {
    id: UserId(4),
    role: Role::Client,
};
const OTHER_CLIENT: Principal = Principal {
    id: UserId(5),
    role: Role::Client,
};

fn ticket(status: TicketStatus) -> Ticket {
    let mut t = super::sample_ticket(status);
    t.created_by = CLIENT.id;
    t.assignees = vec![DEV.id];
    t
}

fn outcome(
    status: TicketStatus,
    by: Principal,
    action: Action,
) -> Result<(TicketStatus, E), TransitionError> {
    transition(&ticket(status), by, &action).map(|c| (c.status, c.event))
}

#[test]
fn the_happy_path_walks_the_whole_lifecycle() {
    assert_eq!(
        outcome(S::New, ADMIN, Action::Open),
        Ok((S::Open, E::TicketOpened))
    );
    assert_eq!(
        outcome(
            S::Open,
            ADMIN,
            Action::Assign {
                developer_ids: vec![DEV.id]
            }
        ),
        Ok((S::Assigned, E::TicketAssigned))
    );
    assert_eq!(
        outcome(S::Assigned, DEV, Action::StartWork),
        Ok((S::InProgress, E::WorkStarted))
    );
    assert_eq!(
        outcome(S::InProgress, DEV, Action::FinishWork),
        Ok((S::Finished, E::WorkFinished))
    );
    assert_eq!(
        outcome(S::Finished, CLIENT, Action::Approve),
        Ok((S::Approved, E::TicketApproved))
    );
    assert_eq!(
        outcome(
            S::Finished,
            CLIENT,
            Action::Reject {
                reason: " meh ".into()
            }
        ),
        Ok((S::Rejected, E::TicketRejected))
    );
    assert_eq!(
        outcome(S::Rejected, DEV, Action::StartWork),
        Ok((S::InProgress, E::WorkStarted))
    );
}

/// Every action from every status, by the right person: which apply and which are 409.
#[test]
fn each_action_applies_only_from_its_statuses() {
    let table: &[(Action, Principal, &[TicketStatus])] = &[
        (Action::Open, ADMIN, &[S::New]),
        (
            Action::Assign {
                developer_ids: vec![DEV.id],
            },
            ADMIN,
            &[S::Open, S::Assigned, S::InProgress, S::Rejected],
        ),
        (Action::StartWork, DEV, &[S::Assigned, S::Rejected]),
        (Action::FinishWork, DEV, &[S::InProgress]),
        (Action::Approve, CLIENT, &[S::Finished]),
        (
            Action::Reject {
                reason: "no".into(),
            },
            CLIENT,
            &[S::Finished],
        ),
        (
            Action::Edit(Edits {
                title: Some("Renamed".into()),
                ..Edits::default()
            }),
            CLIENT,
            &[S::New, S::Open],
        ),
        (
            Action::Comment { body: "hi".into() },
            CLIENT,
            &[
                S::New,
                S::Open,
                S::Assigned,
                S::InProgress,
                S::Finished,
                S::Rejected,
            ],
        ),
    ];
    for (action, by, from) in table {
        for status in TicketStatus::ALL {
            let res = transition(&ticket(*status), *by, action);
            if from.contains(status) {
                assert!(res.is_ok(), "{} from {status}: {res:?}", action.name());
            } else {
                assert_eq!(
                    res,
                    Err(TransitionError::Conflict {
                        action: action.name(),
                        current: *status
                    }),
                    "{} from {status}",
                    action.name()
                );
            }
        }
    }
}

#[test]
fn assigning_in_progress_keeps_the_status_and_reports_only_new_assignees() {
    let c = transition(
        &ticket(S::InProgress),
        ADMIN,
        &Action::Assign {
            developer_ids: vec![OTHER_DEV.id, DEV.id, OTHER_DEV.id],
        },
    )
    .unwrap();
    assert_eq!(c.status, S::InProgress);
    assert_eq!(c.assignees, vec![DEV.id, OTHER_DEV.id]);
    assert_eq!(c.newly_assigned, vec![OTHER_DEV.id]);
    assert!(matches!(
        transition(
            &ticket(S::Open),
            ADMIN,
            &Action::Assign {
                developer_ids: vec![]
            }
        ),
        Err(TransitionError::Invalid(_))
    ));
}

/// The wrong role or person is 403 from every status, before any status check.
#[test]
fn the_wrong_person_is_forbidden_whatever_the_status() {
    let table: &[(Action, &[Principal])] = &[
        (Action::Open, &[DEV, CLIENT]),
        (
            Action::Assign {
                developer_ids: vec![DEV.id],
            },
            &[DEV, CLIENT],
        ),
        (Action::StartWork, &[ADMIN, OTHER_DEV, CLIENT]),
        (Action::FinishWork, &[ADMIN, OTHER_DEV, CLIENT]),
        (Action::Approve, &[ADMIN, DEV, OTHER_CLIENT]),
        (
            Action::Reject {
                reason: String::new(),
            },
            &[ADMIN, DEV, OTHER_CLIENT],
        ),
        (
            Action::Comment { body: "x".into() },
            &[OTHER_DEV, OTHER_CLIENT],
        ),
        (Action::Edit(Edits::default()), &[DEV, OTHER_CLIENT]),
    ];
    for (action, who) in table {
        for by in *who {
            for status in TicketStatus::ALL {
                assert!(
                    matches!(
                        transition(&ticket(*status), *by, action),
                        Err(TransitionError::Forbidden(_))
                    ),
                    "{} by {by:?} from {status}",
                    action.name()
                );
            }
        }
    }
}

#[test]
fn comments_need_a_body_and_an_unapproved_ticket() {
    assert!(matches!(
        transition(
            &ticket(S::Open),
            ADMIN,
            &Action::Comment { body: "  ".into() }
        ),
        Err(TransitionError::Invalid(_))
    ));
    let c = transition(
        &ticket(S::Open),
        DEV,
        &Action::Comment {
            body: " ok ".into(),
        },
    )
    .unwrap();
    assert_eq!((c.status, c.comment.as_deref()), (S::Open, Some("ok")));
}

#[test]
fn an_edit_lists_the_fields_it_changes_and_admins_edit_in_any_status() {
    let edits = Edits {
        title: Some("  Homepage not loading  ".into()),
        description: Some("It shows a blank page.".into()),
        priority: Some(Priority::Critical),
        category: Some(Category::Bug),
    };
    let t = ticket(S::New);
    let c = transition(&t, CLIENT, &Action::Edit(edits.clone())).unwrap();
    assert_eq!((c.status, c.event.clone()), (S::New, E::TicketUpdated));
    assert_eq!(
        c.edits,
        vec![
            FieldChange {
                field: Field::Description,
                before: String::new(),
                after: "It shows a blank page.".into()
            },
            FieldChange {
                field: Field::Priority,
                before: "HIGH".into(),
                after: "CRITICAL".into()
            },
        ],
        "the trimmed title and the category are as they were"
    );
    let after = c.applied_to(&t);
    assert_eq!(after.priority, Priority::Critical);
    assert_eq!(after.description, "It shows a blank page.");
    assert_eq!(after.title, t.title);
    for status in TicketStatus::ALL {
        assert!(transition(&ticket(*status), ADMIN, &Action::Edit(edits.clone())).is_ok());
    }
    let same = transition(&t, CLIENT, &Action::Edit(Edits::default())).unwrap();
    assert!(same.edits.is_empty());
}

#[test]
fn comments_are_changed_by_their_author_and_deleted_by_admins_too() {
    let c = Comment {
        id: 1,
        ticket_id: TicketId(10),
        author: DEV.id,
        author_name: "Dev".into(),
        body: "hi".into(),
        created_at: Utc::now(),
        edited_at: None,
        deleted_at: None,
    };
    let t = ticket(S::InProgress);
    assert_eq!(may_change_comment(&t, &c, DEV, false), Ok(()));
    assert_eq!(may_change_comment(&t, &c, DEV, true), Ok(()));
    assert_eq!(may_change_comment(&t, &c, ADMIN, true), Ok(()));
    assert!(matches!(
        may_change_comment(&t, &c, ADMIN, false),
        Err(TransitionError::Forbidden(_))
    ));
    assert!(matches!(
        may_change_comment(&t, &c, CLIENT, true),
        Err(TransitionError::Forbidden(_))
    ));
    assert!(matches!(
        may_change_comment(&ticket(S::Approved), &c, DEV, false),
        Err(TransitionError::Conflict { .. })
    ));
    let gone = Comment {
        deleted_at: Some(Utc::now()),
        ..c
    };
    assert!(matches!(
        may_change_comment(&t, &gone, DEV, false),
        Err(TransitionError::Invalid(_))
    ));
    assert_eq!(may_change_comment(&t, &gone, DEV, true), Ok(()));
}

#[test]
fn names_round_trip() {
    for s in TicketStatus::ALL {
        assert_eq!(s.as_str().parse::<TicketStatus>().unwrap(), *s);
    }
    assert_eq!(Priority::High.display(), "High");
    assert_eq!(TicketStatus::InProgress.display(), "In Progress");
    assert!("URGENT".parse::<Priority>().is_err());
    assert_eq!(ticket(S::New).key(), "WEB-5");
}

#[test]
fn files_are_attached_by_those_who_comment_and_deleted_by_their_uploader_or_admins() {
    let t = ticket(S::InProgress);
    for by in [ADMIN, DEV, CLIENT] {
        assert_eq!(may_attach(&t, by), Ok(()), "{by:?}");
    }
    for by in [OTHER_DEV, OTHER_CLIENT] {
        assert!(matches!(
            may_attach(&t, by),
            Err(TransitionError::Forbidden(_))
        ));
    }
    assert!(matches!(
        may_attach(&ticket(S::Approved), CLIENT),
        Err(TransitionError::Conflict { .. })
    ));
    assert_eq!(may_remove_attachment(&t, CLIENT.id, CLIENT), Ok(()));
    assert_eq!(may_remove_attachment(&t, CLIENT.id, ADMIN), Ok(()));
    assert!(matches!(
        may_remove_attachment(&t, CLIENT.id, DEV),
        Err(TransitionError::Forbidden(_))
    ));
    assert!(matches!(
        may_remove_attachment(&ticket(S::Approved), CLIENT.id, CLIENT),
        Err(TransitionError::Conflict { .. })
    ));
}
