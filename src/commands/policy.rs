//! Who may stop a countdown (`STOP_POLICY`): one rule for `stop`, `/stop`
//! and the Stop button. Pure: the caller says who is asking and whether
//! they hold Manage Messages in the channel; this says yes or no.

/// Discord's MANAGE_MESSAGES permission bit.
pub const MANAGE_MESSAGES: u64 = 1 << 13;
/// Discord's ADMINISTRATOR permission bit (implies every other one).
pub const ADMINISTRATOR: u64 = 1 << 3;

pub use crate::config::StopPolicy;

impl StopPolicy {
    /// May `actor` stop a countdown started by `starter`?
    pub fn allows(self, actor: &Actor, starter: u64) -> bool {
        match self {
            StopPolicy::Anyone => true,
            StopPolicy::StarterOrManager => actor.user_id == starter || actor.manages_messages,
        }
    }
}

/// Who asks for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: u64,
    /// Holds Manage Messages (or Administrator) in the channel. Always
    /// false in a DM, where only the starter can be anyway.
    pub manages_messages: bool,
}

/// True when a permission set (Discord's bit field) lets its holder manage
/// messages. Administrator implies it.
pub fn manages_messages(permissions: u64) -> bool {
    permissions & (MANAGE_MESSAGES | ADMINISTRATOR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTER: u64 = 7;

    fn actor(user_id: u64, manages_messages: bool) -> Actor {
        Actor {
            user_id,
            manages_messages,
        }
    }

    #[test]
    fn anyone_lets_everybody_stop() {
        assert!(StopPolicy::Anyone.allows(&actor(8, false), STARTER));
    }

    #[test]
    fn starter_or_manager_refuses_a_stranger_only() {
        let p = StopPolicy::StarterOrManager;
        assert!(p.allows(&actor(STARTER, false), STARTER));
        assert!(p.allows(&actor(8, true), STARTER));
        assert!(!p.allows(&actor(8, false), STARTER));
    }

    #[test]
    fn manage_messages_or_administrator_count_as_manager() {
        assert!(manages_messages(MANAGE_MESSAGES));
        assert!(manages_messages(ADMINISTRATOR));
        assert!(manages_messages(MANAGE_MESSAGES | 1 << 11));
        assert!(!manages_messages(1 << 10 | 1 << 11));
        assert!(!manages_messages(0));
    }

    #[test]
    fn parses_the_setting() {
        assert_eq!("anyone".parse(), Ok(StopPolicy::Anyone));
        assert_eq!(
            " Starter_Or_Manager ".parse(),
            Ok(StopPolicy::StarterOrManager)
        );
        assert!("admins".parse::<StopPolicy>().is_err());
        assert_eq!(StopPolicy::default(), StopPolicy::Anyone);
    }
}
