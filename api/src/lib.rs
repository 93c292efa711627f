//! The HTTP API as types, shared by the server (which answers with them and describes them in
//! its OpenAPI document), `client-core` (which reads them) and the tests. Enums replace string
//! literals for roles, grades, kinds, targets and statuses; ids are newtypes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use zhiban_protocol::DocumentId;
pub use zhiban_records::{Grade, Level, PendingItem, Person, Timeliness};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id!(
    /// A user (UUIDv7).
    UserId
);
id!(
    /// A registered phone or tablet of one user (UUIDv7).
    DeviceId
);
id!(
    /// A duty office (UUIDv7).
    UnitId
);
id!(
    /// An alert (UUIDv7).
    AlertId
);
id!(
    /// A roll-call (UUIDv7).
    RollcallId
);
id!(
    /// A Web Push subscription (UUIDv7).
    SubscriptionId
);

/// A user's role in their unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Leader,
    Officer,
    Field,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Leader, Role::Officer, Role::Field];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Leader => "leader",
            Role::Officer => "officer",
            Role::Field => "field",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// Every error answer: a plain message, never a database's own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
}

// ---- auth ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Reuse a device registered earlier (a reinstalled app keeps its device).
    #[serde(default)]
    pub device_id: Option<DeviceId>,
    #[serde(default)]
    pub device_name: Option<String>,
    /// The device's clock when it sent this (ms since the epoch): the server says if it is off.
    #[serde(default)]
    pub device_time: Option<i64>,
    /// A new password, set with this login. Required (answer 428 without it) when an admin
    /// chose the current one: created the account or reset its password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogoutRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// As in `LoginRequest`.
    #[serde(default)]
    pub device_time: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// A JWT for `Authorization: Bearer`, valid `expires_in` seconds; `/sync` takes a ticket
    /// (`POST /api/sync/ticket`) instead, so that no such token ends up in a URL.
    pub access_token: String,
    /// One use only: trade it at `/api/auth/refresh` for a new pair.
    pub refresh_token: String,
    pub expires_in: u64,
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// The peer id this device must use in the sync protocol.
    pub peer_id: String,
    /// Set when the device's clock is more than 5 minutes off the server's (device minus
    /// server): the times it writes into records are then doubtful, and the device is flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub unit_id: UnitId,
    pub role: Role,
    pub cleared: bool,
    pub peer_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceView {
    pub id: DeviceId,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// How far off the server's the device's clock was at its last login or refresh, when
    /// more than 5 minutes (device minus server).
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitView {
    pub id: UnitId,
    pub name: String,
    pub parent_id: Option<UnitId>,
    /// The document listing the unit's plain records, to follow for new ones.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub catalog: DocumentId,
    /// The same for its classified records; only for cleared users.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub classified_catalog: Option<DocumentId>,
}

/// A unit's own reporting intervals in minutes (D11, D12); null: the deployment's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IntervalsBody {
    pub first_report_minutes: Option<u32>,
    pub follow_up_minutes: Option<u32>,
}

/// The reporting intervals a unit's deadlines, alerts and figures follow, in minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Intervals {
    pub unit_id: UnitId,
    pub first_report_minutes: i64,
    pub follow_up_minutes: i64,
}

// ---- accounts (admins, within their own unit and the units below it) -----------------------

/// A user as an admin sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub unit_id: UnitId,
    pub role: Role,
    /// Cleared for classified items (D18).
    pub cleared: bool,
    /// When the account was disabled; null while it may log in.
    pub disabled_at: Option<i64>,
    /// The password was chosen by an admin: the next login must set a new one.
    pub must_change_password: bool,
    pub created_at: i64,
}

/// `POST /api/users`: the password is a temporary one, changed at the first login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUserRequest {
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub password: String,
    pub unit_id: UnitId,
    pub role: Role,
    #[serde(default)]
    pub cleared: bool,
}

/// `PATCH /api/users/{id}`: the fields to change; a change of role, unit or clearance closes
/// the user's open sockets, which reconnect with what they may now see.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<UnitId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared: Option<bool>,
}

/// `POST /api/users/{id}/reset-password`: a temporary password the admin gives the user, or
/// none for one the server makes up (and answers once).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordReset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetDone {
    /// Give it to the user by a safe road; it works for one login, which sets their own.
    pub temporary_password: String,
}

/// `POST /api/units`: a new unit below `parent_id`; or, with `id`, that unit moved below
/// `parent_id` (and renamed when `name` is given).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<UnitId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub parent_id: UnitId,
}

// ---- sync tickets -----------------------------------------------------------------------

/// `POST /api/sync/ticket`: opens this device's `/sync?ticket=…` within `expires_in` seconds,
/// and nothing else (not the REST API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncTicket {
    pub ticket: String,
    pub expires_in: u64,
}

// ---- records -------------------------------------------------------------------------------

/// The types of duty record.
pub use zhiban_records::RecordKind;

/// A record's state as the server projected it: its checks, and whether what is derived from
/// its last change could be written (`flag`; visible to the unit's admins, who are alerted).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordStatus {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: RecordKind,
    pub unit_id: UnitId,
    pub classified: bool,
    pub title: String,
    /// Structural faults: the record is stored but flagged.
    pub problems: Vec<String>,
    /// What a duty officer should look at; never blocking.
    pub warnings: Vec<String>,
    /// Why the server could not derive its rows or alerts from the last change, if so.
    pub flag: Option<String>,
    /// Items (duty-log calls, registered documents) with problems of their own.
    pub item_problems: Vec<ItemProblems>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemProblems {
    pub position: i64,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordPage {
    pub records: Vec<RecordStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    pub unit_id: UnitId,
    pub classified: bool,
    pub title: String,
    pub category: Option<String>,
    pub level: Option<Level>,
    pub grade: Option<Grade>,
    pub status: Option<String>,
    pub location: Option<String>,
    pub known_at: Option<i64>,
    pub reported_at: Option<i64>,
    pub warnings: Vec<String>,
    /// Structural faults of a stored but flagged record.
    pub problems: Vec<String>,
    /// Why the server could not derive rows or alerts from its last change, if so.
    pub flag: Option<String>,
    /// Reporting against its deadlines, as of the request (D11–D13).
    pub timeliness: Timeliness,
    /// Only in the single-incident view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Vec<InstructionView>>,
    /// Only in the single-incident view: its alerts' every step, push, receipt and
    /// acknowledgement (D23).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

/// A leader's instruction (D14). `verified`: written from a device of the leader it names,
/// who holds a leader's (or admin's) role; otherwise it is only text somebody typed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstructionView {
    pub by: Option<String>,
    pub to: Option<String>,
    pub at: Option<i64>,
    pub text: String,
    pub steps: i64,
    pub done: bool,
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentPage {
    pub incidents: Vec<IncidentView>,
    /// How many match in all (for paging).
    pub total: i64,
}

/// One call or message of a duty log (D6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntryView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    pub position: i64,
    pub unit_id: UnitId,
    pub received_at: Option<i64>,
    pub caller_unit: Option<String>,
    pub caller_name: Option<String>,
    pub phone: Option<String>,
    pub content: String,
    pub handling: Option<String>,
    pub handler: Option<String>,
    pub incident: Option<String>,
    /// What is wrong with this entry, if anything.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoverView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    pub unit_id: UnitId,
    pub title: String,
    pub outgoing_by: Option<String>,
    pub outgoing_at: Option<i64>,
    pub incoming_by: Option<String>,
    pub incoming_at: Option<i64>,
    pub open_items: i64,
    pub pending: Vec<PendingItem>,
}

/// Who is on duty in a unit at an instant (D5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnDuty {
    pub unit_id: UnitId,
    pub at: i64,
    pub shifts: Vec<ShiftOnDuty>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShiftOnDuty {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub roster: DocumentId,
    pub start: i64,
    pub end: i64,
    pub kind: Option<String>,
    /// After leader-approved swaps and leaves (D4).
    pub leader: Option<Person>,
    pub officers: Vec<Person>,
    pub backup_leader: Option<Person>,
    pub backup_officers: Vec<Person>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    pub unit_id: UnitId,
    /// The record's title.
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHits {
    pub hits: Vec<SearchHit>,
}

// ---- alerts --------------------------------------------------------------------------------

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A red or yellow incident (D10).
    Incident,
    /// A leader's instruction addressed to someone (D14).
    Instruction,
    /// A first report due (D11).
    FirstReport,
    /// A follow-up report due (D12).
    FollowUp,
    /// A holiday daily or zero report missing (D15).
    DailyReport,
    /// A holiday roster not yet submitted (D3).
    HolidayRoster,
    /// A superior office's roll-call (D16).
    Rollcall,
    /// Something the server could not process; for the unit's admins.
    Problem,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::Incident,
        AlertKind::Instruction,
        AlertKind::FirstReport,
        AlertKind::FollowUp,
        AlertKind::DailyReport,
        AlertKind::HolidayRoster,
        AlertKind::Rollcall,
        AlertKind::Problem,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Incident => "incident",
            AlertKind::Instruction => "instruction",
            AlertKind::FirstReport => "first_report",
            AlertKind::FollowUp => "follow_up",
            AlertKind::DailyReport => "daily_report",
            AlertKind::HolidayRoster => "holiday_roster",
            AlertKind::Rollcall => "rollcall",
            AlertKind::Problem => "problem",
        }
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown alert kind `{s}`"))
    }
}

/// Who a step of an alert reaches. Written as a string: `leader_on_duty`, …, `user:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The leader on duty now, from the roster after approved swaps.
    LeaderOnDuty,
    /// The officers on duty now.
    OfficersOnDuty,
    /// Every leader of the unit.
    UnitLeaders,
    /// Whoever is on duty at the superior office.
    SuperiorOnDuty,
    /// Who reported the matter (D13).
    Responsible,
    /// The unit's admins (and, if it has none, the nearest superior office's).
    UnitAdmins,
    /// One named user of the unit or of a superior office.
    User(UserId),
}

impl Target {
    const NAMED: [(Target, &'static str); 6] = [
        (Target::LeaderOnDuty, "leader_on_duty"),
        (Target::OfficersOnDuty, "officers_on_duty"),
        (Target::UnitLeaders, "unit_leaders"),
        (Target::SuperiorOnDuty, "superior_on_duty"),
        (Target::Responsible, "responsible"),
        (Target::UnitAdmins, "unit_admins"),
    ];
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(user) => write!(f, "user:{user}"),
            named => {
                let name = Target::NAMED
                    .iter()
                    .find(|(target, _)| target == named)
                    .map_or("?", |(_, name)| name);
                f.write_str(name)
            }
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(user) = s.strip_prefix("user:") {
            if user.is_empty() || user.len() > 64 {
                return Err(format!("`{s}` names no user"));
            }
            return Ok(Target::User(user.into()));
        }
        Target::NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(target, _)| target.clone())
            .ok_or_else(|| format!("unknown target `{s}`"))
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Target {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "leader_on_duty, officers_on_duty, unit_leaders, superior_on_duty, \
                 responsible, unit_admins, or user:<id>",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Target {}

/// One step of an escalation policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Seconds after the alert's base time: when it was raised, or for a deadline when the
    /// thing is due (negative: a reminder before it).
    pub after_secs: i64,
    pub targets: Vec<Target>,
    /// Sent again this often until acknowledged or until the next step is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every_secs: Option<i64>,
    /// Ends the alert as missed once this step has run (a roll-call's window).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expire: bool,
}

impl Step {
    pub fn new(after_secs: i64, targets: impl IntoIterator<Item = Target>) -> Self {
        Self {
            after_secs,
            targets: targets.into_iter().collect(),
            repeat_every_secs: None,
            expire: false,
        }
    }

    pub fn repeat(mut self, every_secs: i64) -> Self {
        self.repeat_every_secs = Some(every_secs);
        self
    }

    pub fn expire(mut self) -> Self {
        self.expire = true;
        self
    }
}

/// How an alert ended other than by an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A deadline met by the report it waited for.
    Met,
    /// The record it waited for was submitted (daily report, holiday roster).
    Submitted,
    /// The incident was closed by its final report.
    Closed,
    /// The incident's grade changed.
    Regraded,
    /// The instruction was done.
    Done,
    /// A roll-call answered.
    Answered,
    /// A roll-call not answered in its window.
    Missed,
}

impl Resolution {
    pub const ALL: [Resolution; 7] = [
        Resolution::Met,
        Resolution::Submitted,
        Resolution::Closed,
        Resolution::Regraded,
        Resolution::Done,
        Resolution::Answered,
        Resolution::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Met => "met",
            Resolution::Submitted => "submitted",
            Resolution::Closed => "closed",
            Resolution::Regraded => "regraded",
            Resolution::Done => "done",
            Resolution::Answered => "answered",
            Resolution::Missed => "missed",
        }
    }
}

impl FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::ALL
            .into_iter()
            .find(|resolution| resolution.as_str() == s)
            .ok_or_else(|| format!("unknown resolution `{s}`"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertView {
    pub id: AlertId,
    pub kind: AlertKind,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub document_id: Option<DocumentId>,
    /// For a roll-call's alert: the roll-call to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollcall_id: Option<RollcallId>,
    pub unit_id: UnitId,
    pub classified: bool,
    pub grade: Option<Grade>,
    pub title: String,
    pub created_at: i64,
    pub due_at: Option<i64>,
    pub step: i64,
    pub next_at: Option<i64>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<UserId>,
    pub resolved_at: Option<i64>,
    pub resolution: Option<Resolution>,
    /// Whether the caller was among those alerted.
    pub targeted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

/// `POST /api/alerts/{id}/push-ack` and `…/push-receipt`: the `push_token` of the push that
/// carried the alert, which stands for the device it was pushed to, for this alert only (a
/// service worker has no session).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushToken {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

/// One thing that happened to an alert: raised, a step and whom it reached, each push
/// attempt, the device's receipt, the acknowledgement, the resolution (D19, D23).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub alert_id: AlertId,
    pub at: i64,
    /// `alert.raised`, `alert.step`, `alert.repeat`, `alert.step_failed`, `alert.acknowledged`,
    /// `alert.taken_over` (by an office above),
    /// `alert.resolved`, `push.delivered`, `push.retry`, `push.failed`, `push.gone`,
    /// `push.received`, `rollcall.answered`.
    pub event: String,
    pub user_id: Option<UserId>,
    /// Event-specific facts (targets, attempts, reasons).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// The answer to an acknowledgement: who acknowledged first and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Acknowledged {
    pub id: AlertId,
    /// True when it was already acknowledged or resolved: nothing changed.
    pub already: bool,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<UserId>,
    pub resolved_at: Option<i64>,
    pub resolution: Option<Resolution>,
    /// Set when the alert was a roll-call's: acknowledging it answered the roll-call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollcall: Option<RollcallAnswered>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollcallRequest {
    pub unit_id: UnitId,
    /// How long the duty post has to answer, 30 to 3600; 5 minutes by default.
    #[serde(default)]
    pub window_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollcallCalled {
    pub id: RollcallId,
    pub alert_id: AlertId,
    pub due_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RollcallStatus {
    Open,
    Answered,
    Missed,
}

impl RollcallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RollcallStatus::Open => "open",
            RollcallStatus::Answered => "answered",
            RollcallStatus::Missed => "missed",
        }
    }
}

impl FromStr for RollcallStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RollcallStatus::Open,
            RollcallStatus::Answered,
            RollcallStatus::Missed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown roll-call status `{s}`"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollcallAnswered {
    pub id: RollcallId,
    pub status: RollcallStatus,
    pub answered_at: i64,
    pub delay_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollcallView {
    pub id: RollcallId,
    pub called_by: UserId,
    pub called_at: i64,
    pub window_ms: i64,
    pub status: RollcallStatus,
    pub answered_at: Option<i64>,
    pub answered_by: Option<UserId>,
    pub delay_ms: Option<i64>,
    pub alert_id: AlertId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollcallList {
    pub unit_id: UnitId,
    pub rollcalls: Vec<RollcallView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    pub unit_id: UnitId,
    pub grade: Grade,
    pub steps: Vec<Step>,
}

// ---- push ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VapidPublicKey {
    /// Base64url, for `pushManager.subscribe({applicationServerKey})`.
    pub public_key: String,
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    pub endpoint: String,
    #[serde(default)]
    pub expiration_time: Option<f64>,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscribed {
    pub id: SubscriptionId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnsubscribeRequest {
    pub endpoint: String,
}

// ---- operators -----------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStats {
    pub connections: usize,
    pub documents_loaded: usize,
    /// Document actors that panicked since the server started (each reloaded on next use).
    pub documents_failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_as_strings() {
        for text in [
            "leader_on_duty",
            "officers_on_duty",
            "unit_leaders",
            "superior_on_duty",
            "responsible",
            "unit_admins",
            "user:0191e5c4-7d1a",
        ] {
            let target: Target = text.parse().unwrap();
            assert_eq!(target.to_string(), text);
            assert_eq!(
                serde_json::to_value(&target).unwrap(),
                serde_json::json!(text)
            );
        }
        assert!("user:".parse::<Target>().is_err());
        assert!("everyone".parse::<Target>().is_err());
    }

    #[test]
    fn enums_are_their_names() {
        for kind in AlertKind::ALL {
            assert_eq!(kind.as_str().parse::<AlertKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        for resolution in Resolution::ALL {
            assert_eq!(resolution.as_str().parse::<Resolution>(), Ok(resolution));
            assert_eq!(
                serde_json::to_value(resolution).unwrap(),
                serde_json::json!(resolution.as_str())
            );
        }
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }
}
