//! Issuance an operator asks for directly (the CLI's `issue` and `stations add`): the
//! operator is the authority, so a device need not be registered and there is no
//! approval gate; but the same key rules and the same typed plan as EST, and a device
//! the registry knows as revoked or decommissioned is refused (revoking a device blocks
//! every further certificate for it, DESIGN §3).

use crate::csr::CheckedCsr;
use crate::ra::{
    is_valid_device_id, DeviceRecord, DeviceState, Effect, Plan, PlannedKey, Policy, ProfileKind, Refusal, Subject,
};

/// What an operator asks to have issued.
#[derive(Clone, Debug)]
pub struct OperatorRequest {
    pub profile: String,
    pub csr: CheckedCsr,
    /// Device id (device profiles); defaults to the CSR's CN.
    pub device_id: Option<String>,
    /// Device model (device profiles); defaults to the profile's default model.
    pub model: Option<String>,
    /// Who asks, for the audit log.
    pub actor: String,
    /// The registry's record of the device the request is for, if it has one.
    pub registered: Option<DeviceRecord>,
}

impl OperatorRequest {
    /// The device id a device profile's certificate is for: the one given, or the CN.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref().or(self.csr.common_name.as_deref())
    }
}

/// The plan for an operator's request, or why it cannot be issued.
pub fn plan(policy: &Policy, request: OperatorRequest) -> Result<Plan, Refusal> {
    let profile =
        policy.profiles.get(&request.profile).ok_or_else(|| Refusal::UnknownProfile(request.profile.clone()))?;
    profile.check_request(&request.profile, &request.csr)?;
    let cn =
        || request.csr.common_name.clone().ok_or_else(|| Refusal::Policy("the CSR subject has no commonName".into()));
    let subject = match profile.kind {
        ProfileKind::Device => {
            let id = match &request.device_id {
                Some(id) => id.clone(),
                None => cn()?,
            };
            if !is_valid_device_id(&id) {
                return Err(Refusal::InvalidDeviceId(id));
            }
            if let Some(d) = request.registered.as_ref().filter(|d| d.device_id == id) {
                if matches!(d.state, DeviceState::Revoked | DeviceState::Decommissioned) {
                    return Err(Refusal::DeviceNotEnrollable { id, state: d.state });
                }
            }
            let model = request
                .model
                .clone()
                .or_else(|| profile.default_model.clone())
                .ok_or_else(|| Refusal::Policy("no device model given and the profile has no default".into()))?;
            let model_oid = *policy.models.get(&model).ok_or(Refusal::UnknownModelName(model))?;
            Subject::Device { id, model_oid }
        }
        ProfileKind::TlsServer => Subject::Server(vec![cn()?]),
        ProfileKind::UpdateSigning => {
            return Err(Refusal::Policy(
                "update-signing certificates are issued only for an update request that two approvers \
                 approved (admin API /api/v1/update-requests)"
                    .into(),
            ))
        }
        ProfileKind::Operator => {
            return Err(Refusal::Policy(
                "operator certificates carry a role: issue them with `ca-service operators add`".into(),
            ))
        }
        ProfileKind::Station | ProfileKind::OcspSigner => Subject::Named(cn()?),
    };
    let effect: Option<Effect> = None;
    Ok(Plan {
        profile: request.profile,
        subject,
        key: PlannedKey::Request(request.csr.public_key_der),
        effect,
        delivery: None,
        actor: request.actor,
    })
}
