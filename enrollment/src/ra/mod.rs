//! The registration authority: the one enrollment pipeline every issuing path goes
//! through (DESIGN §2–§3; Boulder's RA between the web front end and storage,
//! step-ca's provisioners that authorize and return options for one signer).
//!
//! *authenticate* the caller → *authorize* against the registry → *approval gate* →
//! *rate limits* → a typed [`Plan`] that the issuer applies. The pipeline reads the
//! registry and reaches the issuer through two ports ([`Registry`], [`Issuer`]) that
//! the service implements; it knows no storage, no configuration and no HTTP.
//! Refusals are one enum, [`Refusal`], with one mapping to an HTTP status.

mod authenticate;
mod operator;
mod pipeline;
mod plan;
mod profile;
mod refusal;
mod registry;
mod renewal;

pub use authenticate::{check_certificate, short, StationWindows};
pub use operator::{plan as plan_for_operator, OperatorRequest};
pub use pipeline::{
    require_certificate, sha256_hex, unix_now, Answer, KeySource, RegistrationAuthority, RenewalInfo, RenewalRequest,
    StationCaller, StationClaim, StationRequest,
};
pub use plan::{Admission, ApprovalRequest, DeliveryKey, Effect, Issuer, Plan, PlannedKey, Registry, Subject};
pub use profile::{is_valid_device_id, Approval, KeyType, Policy, ProfileKind, ProfilePolicy};
pub use refusal::Refusal;
pub use registry::{
    ApprovalState, CertState, Context, DeviceRecord, DeviceState, EarlierDelivery, KnownCertificate, Lookup,
    StationRecord, UnknownDeviceState,
};
pub use renewal::{jitter_ppm, window, RenewalPolicy, Rotation, Window, WindowCause, MILLION};

#[cfg(test)]
mod tests;
