//! The `User` aggregate: `handle` decides, `apply` records.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{Changes, NewUser, UserCommand};
use super::error::UserError;
use super::events::{PasswordHash, UserEvent};
use super::services::UserServices;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// cqrs-es hands out `Default` state for an id with no events: this tells them apart.
    pub exists: bool,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub organisation_id: Option<i64>,
    pub is_admin: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub is_active: bool,
    pub is_email_verified: bool,
    pub groups: BTreeSet<String>,
    pub password_hash: Option<PasswordHash>,
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = UserServices;

    async fn handle(
        &mut self,
        command: UserCommand,
        services: &UserServices,
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        if let UserCommand::Create(new_user) = command {
            if self.exists {
                return Err(UserError::AlreadyExists);
            }
            let event = self.create(new_user, services).await?;
            sink.write(event, self).await;
            return Ok(());
        }
        if !self.exists {
            return Err(UserError::NotFound);
        }
        let events = match command {
            UserCommand::Create(_) => unreachable!("handled above"),
            UserCommand::Update(update) => self.changes(update.into()),
            UserCommand::Patch(patch) => self.changes(patch.into()),
            UserCommand::Deactivate => self.set_active(false).into_iter().collect(),
            UserCommand::Reactivate => self.set_active(true).into_iter().collect(),
            UserCommand::SetFlags {
                is_staff,
                is_superuser,
            } => self.set_flags(is_staff, is_superuser),
            UserCommand::JoinGroup(group) => {
                let mut groups = self.groups.clone();
                groups.insert(group);
                self.groups_changed(groups).into_iter().collect()
            }
            UserCommand::LeaveGroup(group) => {
                let mut groups = self.groups.clone();
                groups.remove(&group);
                self.groups_changed(groups).into_iter().collect()
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::Created {
                email,
                first_name,
                last_name,
                organisation_id,
                is_admin,
                is_staff,
                is_superuser,
                groups,
                password_hash,
            } => {
                *self = Self {
                    exists: true,
                    email,
                    first_name,
                    last_name,
                    organisation_id,
                    is_admin,
                    is_staff,
                    is_superuser,
                    is_active: true,
                    is_email_verified: false,
                    groups: groups.into_iter().collect(),
                    password_hash: Some(password_hash),
                }
            }
            UserEvent::EmailChanged { email } => {
                self.email = email;
                self.is_email_verified = false;
            }
            UserEvent::FirstNameChanged { first_name } => self.first_name = first_name,
            UserEvent::LastNameChanged { last_name } => self.last_name = last_name,
            UserEvent::OrganisationChanged { organisation_id } => {
                self.organisation_id = organisation_id
            }
            UserEvent::AdminGranted => self.is_admin = true,
            UserEvent::AdminRevoked => self.is_admin = false,
            UserEvent::GroupsChanged { groups } => self.groups = groups.into_iter().collect(),
            UserEvent::Deactivated => self.is_active = false,
            UserEvent::Reactivated => self.is_active = true,
            UserEvent::StaffGranted => self.is_staff = true,
            UserEvent::StaffRevoked => self.is_staff = false,
            UserEvent::SuperuserGranted => self.is_superuser = true,
            UserEvent::SuperuserRevoked => self.is_superuser = false,
        }
    }
}

impl User {
    async fn create(&self, new: NewUser, services: &UserServices) -> Result<UserEvent, UserError> {
        let password_hash = services
            .hasher
            .hash(&new.password)
            .await
            .map_err(|_| UserError::PasswordHashing)?;
        Ok(UserEvent::Created {
            email: new.email.as_str().to_owned(),
            first_name: new.first_name.as_str().to_owned(),
            last_name: new.last_name.as_str().to_owned(),
            organisation_id: new.organisation_id.map(|id| id.get()),
            is_admin: new.is_admin,
            is_staff: new.is_staff,
            is_superuser: new.is_superuser,
            groups: new.groups.into_iter().collect(),
            password_hash,
        })
    }

    /// One event per field that really differs, in a fixed order; nothing for no change.
    fn changes(&self, changes: Changes) -> Vec<UserEvent> {
        let mut events = Vec::new();
        if let Some(email) = changes.email.filter(|e| e.as_str() != self.email) {
            events.push(UserEvent::EmailChanged {
                email: email.as_str().to_owned(),
            });
        }
        if let Some(name) = changes.first_name.filter(|n| n.as_str() != self.first_name) {
            events.push(UserEvent::FirstNameChanged {
                first_name: name.as_str().to_owned(),
            });
        }
        if let Some(name) = changes.last_name.filter(|n| n.as_str() != self.last_name) {
            events.push(UserEvent::LastNameChanged {
                last_name: name.as_str().to_owned(),
            });
        }
        if let Some(organisation_id) = changes
            .organisation_id
            .map(|id| id.map(|id| id.get()))
            .filter(|id| *id != self.organisation_id)
        {
            events.push(UserEvent::OrganisationChanged { organisation_id });
        }
        match changes.is_admin {
            Some(true) if !self.is_admin => events.push(UserEvent::AdminGranted),
            Some(false) if self.is_admin => events.push(UserEvent::AdminRevoked),
            _ => {}
        }
        if let Some(groups) = changes.groups {
            events.extend(self.groups_changed(groups));
        }
        if let Some(active) = changes.is_active {
            events.extend(self.set_active(active));
        }
        events
    }

    fn groups_changed(&self, groups: BTreeSet<String>) -> Option<UserEvent> {
        (groups != self.groups).then(|| UserEvent::GroupsChanged {
            groups: groups.into_iter().collect(),
        })
    }

    fn set_flags(&self, is_staff: Option<bool>, is_superuser: Option<bool>) -> Vec<UserEvent> {
        let mut events = Vec::new();
        match is_staff {
            Some(true) if !self.is_staff => events.push(UserEvent::StaffGranted),
            Some(false) if self.is_staff => events.push(UserEvent::StaffRevoked),
            _ => {}
        }
        match is_superuser {
            Some(true) if !self.is_superuser => events.push(UserEvent::SuperuserGranted),
            Some(false) if self.is_superuser => events.push(UserEvent::SuperuserRevoked),
            _ => {}
        }
        events
    }

    fn set_active(&self, active: bool) -> Option<UserEvent> {
        match (self.is_active, active) {
            (true, false) => Some(UserEvent::Deactivated),
            (false, true) => Some(UserEvent::Reactivated),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
