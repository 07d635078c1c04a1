//! Microsoft's CSDL for the Intune device operations, shipped as data and read with
//! `roxmltree`: the emulator checks every Graph request against it, independently of the
//! gateway's own catalog and schemas, so an end-to-end test catches a gateway schema mistake.
//! v1.0 is Microsoft's excerpt verbatim; beta is hand-written from the beta SDK (labelled so
//! in the file). `check` validates a JSON body against an operation's parameters.

mod check;

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use check::CsdlViolation;

use crate::microsoft::ApiVersion;

/// Microsoft's v1.0 CSDL excerpt (every action bound to managedDevice or user), verbatim.
pub const V1_XML: &str = include_str!("managedDevice-actions-v1.0.xml");
/// The beta excerpt, derived from the beta SDK (see the comment at its top).
pub const BETA_XML: &str = include_str!("managedDevice-actions-beta.xml");

/// Whether an operation is an OData action (POST) or function (GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<Action>`: invoked with POST, parameters in the body.
    Action,
    /// `<Function>`: invoked with GET, `name()`.
    Function,
}

/// What an operation is bound to (its `bindingParameter`'s type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `graph.managedDevice`: one device.
    Device,
    /// `Collection(graph.managedDevice)`: the devices collection (bulk).
    DeviceCollection,
    /// `graph.user`.
    User,
}

/// A parameter or a complex type's property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Wire name, case-sensitive.
    pub name: String,
    /// Its type as written (`Edm.Boolean`, `graph.x`, `Collection(Edm.String)`).
    pub ty: String,
    /// `false` when the CSDL says `Nullable="false"`.
    pub nullable: bool,
}

/// One bound action or function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The name as Graph spells it (`wipe`).
    pub name: String,
    /// Action or function.
    pub kind: Kind,
    /// What it is bound to.
    pub binding: Binding,
    /// Its parameters, the binding parameter left out.
    pub params: Vec<Member>,
    /// Its return type, if it has one (then it answers 200 with a body, else 204).
    pub returns: Option<String>,
}

/// A complex type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplexType {
    /// Its base type's name (unqualified), if it derives from one.
    pub base: Option<String>,
    /// Its own properties (not the inherited ones).
    pub props: Vec<Member>,
}

/// One version's excerpt, parsed.
#[derive(Debug, Default)]
pub struct Csdl {
    /// Operations by name.
    pub operations: BTreeMap<String, Operation>,
    /// Complex types by unqualified name.
    pub complex_types: BTreeMap<String, ComplexType>,
    /// Enum types by unqualified name: their member names.
    pub enum_types: BTreeMap<String, Vec<String>>,
}

impl Csdl {
    /// The parsed excerpt of `version` (parsed once).
    pub fn of(version: ApiVersion) -> Result<&'static Csdl, String> {
        static V1: OnceLock<Result<Csdl, String>> = OnceLock::new();
        static BETA: OnceLock<Result<Csdl, String>> = OnceLock::new();
        let parsed = match version {
            ApiVersion::V1 => V1.get_or_init(|| Csdl::parse(V1_XML)),
            ApiVersion::Beta => BETA.get_or_init(|| Csdl::parse(BETA_XML)),
        };
        parsed.as_ref().map_err(Clone::clone)
    }

    /// Parses an excerpt: a sequence of `Action`, `Function`, `ComplexType` and `EnumType`
    /// elements without a root (as cut from the full document), wrapped here in one.
    pub fn parse(xml: &str) -> Result<Csdl, String> {
        let wrapped = format!("<Schema>{xml}</Schema>");
        let doc = roxmltree::Document::parse(&wrapped).map_err(|e| format!("CSDL: {e}"))?;
        let mut csdl = Csdl::default();
        for node in doc.root_element().children().filter(|n| n.is_element()) {
            let name = attr(&node, "Name")?;
            match node.tag_name().name() {
                "Action" => csdl.add_operation(&node, name, Kind::Action)?,
                "Function" => csdl.add_operation(&node, name, Kind::Function)?,
                "ComplexType" => {
                    let base = node.attribute("BaseType").map(unqualified);
                    let props = members(&node, "Property")?;
                    csdl.complex_types.insert(name, ComplexType { base, props });
                }
                "EnumType" => {
                    let names = node
                        .children()
                        .filter(|n| n.has_tag_name("Member"))
                        .map(|m| attr(&m, "Name"))
                        .collect::<Result<_, _>>()?;
                    csdl.enum_types.insert(name, names);
                }
                other => return Err(format!("CSDL: unexpected element <{other}>")),
            }
        }
        Ok(csdl)
    }

    fn add_operation(
        &mut self,
        node: &roxmltree::Node<'_, '_>,
        name: String,
        kind: Kind,
    ) -> Result<(), String> {
        let mut params = members(node, "Parameter")?;
        if params.first().map(|p| p.name.as_str()) != Some("bindingParameter") {
            return Err(format!("CSDL: {name} has no bindingParameter"));
        }
        let binding = match params.remove(0).ty.as_str() {
            "graph.managedDevice" => Binding::Device,
            "Collection(graph.managedDevice)" => Binding::DeviceCollection,
            "graph.user" => Binding::User,
            other => return Err(format!("CSDL: {name} is bound to {other}")),
        };
        let returns = node
            .children()
            .find(|n| n.has_tag_name("ReturnType"))
            .map(|r| attr(&r, "Type"))
            .transpose()?;
        self.operations.insert(
            name.clone(),
            Operation {
                name,
                kind,
                binding,
                params,
                returns,
            },
        );
        Ok(())
    }

    /// Every property of complex type `name`, inherited ones first.
    pub fn properties(&self, name: &str) -> Vec<&Member> {
        let mut chain = Vec::new();
        let mut next = Some(name);
        // Bounded: a cycle in hand-written data must not hang the emulator.
        while let Some(ty) = next.and_then(|n| self.complex_types.get(n)) {
            if chain.len() > 16 {
                break;
            }
            chain.push(ty);
            next = ty.base.as_deref();
        }
        chain.iter().rev().flat_map(|t| t.props.iter()).collect()
    }

    /// Complex type `derived` is `base` or derives from it.
    pub fn derives_from(&self, derived: &str, base: &str) -> bool {
        let mut next = Some(derived);
        for _ in 0..16 {
            match next {
                Some(n) if n == base => return true,
                Some(n) => next = self.complex_types.get(n).and_then(|t| t.base.as_deref()),
                None => return false,
            }
        }
        false
    }
}

fn attr(node: &roxmltree::Node<'_, '_>, name: &str) -> Result<String, String> {
    node.attribute(name)
        .map(str::to_owned)
        .ok_or_else(|| format!("CSDL: <{}> without {name}", node.tag_name().name()))
}

fn members(node: &roxmltree::Node<'_, '_>, tag: &str) -> Result<Vec<Member>, String> {
    node.children()
        .filter(|n| n.has_tag_name(tag))
        .map(|p| {
            Ok(Member {
                name: attr(&p, "Name")?,
                ty: attr(&p, "Type")?,
                nullable: p.attribute("Nullable") != Some("false"),
            })
        })
        .collect()
}

/// `graph.windowsDeviceAccount` → `windowsDeviceAccount`.
fn unqualified(ty: &str) -> String {
    ty.strip_prefix("graph.").unwrap_or(ty).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_excerpts_parse() {
        let v1 = Csdl::of(ApiVersion::V1).unwrap();
        assert_eq!(v1.operations.len(), 19);
        let wipe = &v1.operations["wipe"];
        assert_eq!((wipe.kind, wipe.binding), (Kind::Action, Binding::Device));
        assert_eq!(wipe.params.len(), 4);
        assert!(!v1.operations["cleanWindowsDevice"].params[0].nullable);
        assert_eq!(
            v1.operations["removeAllDevicesFromManagement"].binding,
            Binding::User
        );
        assert!(v1.derives_from("windowsDeviceAzureADAccount", "windowsDeviceAccount"));
        let names: Vec<&str> = v1
            .properties("windowsDeviceADAccount")
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["password", "domainName", "userName"]);

        let beta = Csdl::of(ApiVersion::Beta).unwrap();
        for name in v1.operations.keys() {
            assert!(beta.operations.contains_key(name), "{name} in beta");
        }
        assert_eq!(
            beta.operations["executeAction"].binding,
            Binding::DeviceCollection
        );
        assert_eq!(beta.operations["getFileVaultKey"].kind, Kind::Function);
        assert!(beta.enum_types["managedDeviceRemoteAction"].contains(&"wipe".to_owned()));
    }

    #[test]
    fn malformed_excerpts_are_refused() {
        assert!(Csdl::parse("<Action Name=\"x\" IsBound=\"true\"/>").is_err());
        assert!(Csdl::parse("<Action IsBound=\"true\"/>").is_err());
        assert!(Csdl::parse("<Action").is_err());
        assert!(Csdl::parse("<Entity Name=\"x\"/>").is_err());
    }
}
