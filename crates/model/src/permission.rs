//! Permissions a user grants a product (docs/compatibility.md §6), as a small bit set.
//!
//! A grant holds a [`PermissionSet`]; the schema table says, per field, which permissions show
//! it and which let a product write it. Nothing else in the system decides visibility.

use std::fmt;

/// One permission of the catalogue. The string forms (`thermostat:read` …) are what the CLI,
/// the product store and the consent page use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Permission {
    ThermostatRead = 0,
    ThermostatReadWrite,
    SmokeCoRead,
    CameraRead,
    CameraReadWrite,
    CameraReadImages,
    CameraReadWriteImages,
    AwayRead,
    AwayReadWrite,
    EtaWrite,
    PostalCodeRead,
    EnergyRead,
    SecurityStateRead,
    StructureReadWrite,
    ProductDataReadWrite,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::ThermostatRead,
        Permission::ThermostatReadWrite,
        Permission::SmokeCoRead,
        Permission::CameraRead,
        Permission::CameraReadWrite,
        Permission::CameraReadImages,
        Permission::CameraReadWriteImages,
        Permission::AwayRead,
        Permission::AwayReadWrite,
        Permission::EtaWrite,
        Permission::PostalCodeRead,
        Permission::EnergyRead,
        Permission::SecurityStateRead,
        Permission::StructureReadWrite,
        Permission::ProductDataReadWrite,
    ];

    /// Stable identifier used in storage, on the command line and in the API.
    pub fn id(self) -> &'static str {
        match self {
            Permission::ThermostatRead => "thermostat:read",
            Permission::ThermostatReadWrite => "thermostat:write",
            Permission::SmokeCoRead => "smoke_co:read",
            Permission::CameraRead => "camera:read",
            Permission::CameraReadWrite => "camera:write",
            Permission::CameraReadImages => "camera:read+images",
            Permission::CameraReadWriteImages => "camera:write+images",
            Permission::AwayRead => "away:read",
            Permission::AwayReadWrite => "away:write",
            Permission::EtaWrite => "eta:write",
            Permission::PostalCodeRead => "postal_code:read",
            Permission::EnergyRead => "energy:read",
            Permission::SecurityStateRead => "security_state:read",
            Permission::StructureReadWrite => "structure:write",
            Permission::ProductDataReadWrite => "product_data:write",
        }
    }

    /// The name the original developer console used.
    pub fn title(self) -> &'static str {
        match self {
            Permission::ThermostatRead => "Thermostat read",
            Permission::ThermostatReadWrite => "Thermostat read/write",
            Permission::SmokeCoRead => "Smoke+CO read",
            Permission::CameraRead => "Camera read",
            Permission::CameraReadWrite => "Camera read/write",
            Permission::CameraReadImages => "Camera read + images",
            Permission::CameraReadWriteImages => "Camera read/write + images",
            Permission::AwayRead => "Away read",
            Permission::AwayReadWrite => "Away read/write",
            Permission::EtaWrite => "ETA write",
            Permission::PostalCodeRead => "Postal code read",
            Permission::EnergyRead => "Energy read",
            Permission::SecurityStateRead => "Security state read",
            Permission::StructureReadWrite => "Structure read/write",
            Permission::ProductDataReadWrite => "Product data read/write",
        }
    }

    /// Plain words for the consent page: what the user lets the product do.
    pub fn plain_words(self) -> &'static str {
        match self {
            Permission::ThermostatRead => "See your thermostats: temperatures, humidity, mode and settings",
            Permission::ThermostatReadWrite => {
                "See and change your thermostats: target temperatures, mode, fan timer, scale and label"
            }
            Permission::SmokeCoRead => "See your smoke and CO alarms and their alarm states",
            Permission::CameraRead => "See your cameras and their motion, sound and person events",
            Permission::CameraReadWrite => "See your cameras and turn them on or off",
            Permission::CameraReadImages => {
                "See your cameras, including snapshots, event images and activity zones"
            }
            Permission::CameraReadWriteImages => "See your cameras including images, and turn them on or off",
            Permission::AwayRead => "See whether your home is set to Home or Away",
            Permission::AwayReadWrite => "See and set whether your home is Home or Away",
            Permission::EtaWrite => "Tell your home when you expect to arrive",
            Permission::PostalCodeRead => "See your home's postal code",
            Permission::EnergyRead => "See Rush Hour Rewards enrollment and peak energy periods",
            Permission::SecurityStateRead => {
                "See your home's security state (whether cameras see a person while you are away)"
            }
            Permission::StructureReadWrite => "See your home's settings and rename it",
            Permission::ProductDataReadWrite => {
                "Store this product's own device data (energy and water use) in your home"
            }
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.id() == s)
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A set of permissions: a grant's permissions, or the permissions that show or write a field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub const fn of(perms: &[Permission]) -> PermissionSet {
        let mut bits = 0;
        let mut i = 0;
        while i < perms.len() {
            bits |= perms[i].bit();
            i += 1;
        }
        PermissionSet(bits)
    }

    pub fn all() -> PermissionSet {
        PermissionSet::of(&Permission::ALL)
    }

    pub const fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// True when the two sets share at least one permission.
    pub const fn intersects(self, other: PermissionSet) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn from_bits(bits: u32) -> PermissionSet {
        PermissionSet(bits & PermissionSet::all().0)
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// Parses a comma- or space-separated list of permission ids; `all` means every permission.
    pub fn parse_list(s: &str) -> Result<PermissionSet, String> {
        let mut set = PermissionSet::EMPTY;
        for word in s.split([',', ' ']).filter(|w| !w.is_empty()) {
            if word == "all" {
                set = set.union(PermissionSet::all());
                continue;
            }
            match Permission::parse(word) {
                Some(p) => set = set.union(PermissionSet::of(&[p])),
                None => {
                    return Err(format!(
                        "unknown permission '{word}'; known: all, {}",
                        Permission::ALL.map(|p| p.id()).join(", ")
                    ));
                }
            }
        }
        Ok(set)
    }

    pub fn to_list(self) -> Vec<&'static str> {
        self.iter().map(|p| p.id()).collect()
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|p| p.id())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.id()), Some(p));
        }
        let mut ids: Vec<_> = Permission::ALL.iter().map(|p| p.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Permission::ALL.len());
    }

    #[test]
    fn parse_list_accepts_all_and_rejects_unknown() {
        assert_eq!(PermissionSet::parse_list("all"), Ok(PermissionSet::all()));
        let set = PermissionSet::parse_list("thermostat:read, away:write").unwrap();
        assert!(set.contains(Permission::ThermostatRead));
        assert!(set.contains(Permission::AwayReadWrite));
        assert!(!set.contains(Permission::AwayRead));
        let err = PermissionSet::parse_list("thermostat:fly").unwrap_err();
        assert!(err.contains("thermostat:fly"), "{err}");
    }
}
