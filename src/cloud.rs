//! The national-cloud table: each cloud's Graph root, Entra authority host and app-only scope.
//! A deployment is pinned to exactly one of these (`GRAPHGATE_CLOUD`).

use std::fmt;
use std::str::FromStr;

/// One Microsoft national cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// Worldwide service (also Microsoft 365 GCC).
    Global,
    /// US Government L4 (GCC High).
    UsGov,
    /// US Government L5 (DoD).
    UsDod,
    /// China, operated by 21Vianet.
    China,
}

/// What a deployment needs to know about its cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudEndpoints {
    /// The name used in configuration (`GRAPHGATE_CLOUD`).
    pub name: &'static str,
    /// Graph host, without scheme; the service root is `https://{graph_host}`.
    pub graph_host: &'static str,
    /// Entra authority host, without scheme.
    pub login_host: &'static str,
    /// Other authority hosts Entra's instance discovery lists as aliases for this cloud.
    pub login_aliases: &'static [&'static str],
    /// The `.default` scope of the cloud's Graph resource.
    pub scope: &'static str,
    /// The token audience (the Graph resource URI).
    pub resource: &'static str,
}

/// The one table, in the order of `Cloud::ALL`.
const TABLE: [CloudEndpoints; 4] = [
    CloudEndpoints {
        name: "global",
        graph_host: "graph.microsoft.com",
        login_host: "login.microsoftonline.com",
        login_aliases: &[],
        scope: "https://graph.microsoft.com/.default",
        resource: "https://graph.microsoft.com",
    },
    CloudEndpoints {
        name: "us-gov",
        graph_host: "graph.microsoft.us",
        login_host: "login.microsoftonline.us",
        login_aliases: &["login.usgovcloudapi.net"],
        scope: "https://graph.microsoft.us/.default",
        resource: "https://graph.microsoft.us",
    },
    CloudEndpoints {
        name: "us-dod",
        graph_host: "dod-graph.microsoft.us",
        login_host: "login.microsoftonline.us",
        login_aliases: &["login.usgovcloudapi.net"],
        scope: "https://dod-graph.microsoft.us/.default",
        resource: "https://dod-graph.microsoft.us",
    },
    CloudEndpoints {
        // Entra's instance discovery prefers login.partner.microsoftonline.cn; Graph's
        // deployment page lists login.chinacloudapi.cn, which is an alias of it.
        name: "china",
        graph_host: "microsoftgraph.chinacloudapi.cn",
        login_host: "login.partner.microsoftonline.cn",
        login_aliases: &["login.chinacloudapi.cn"],
        scope: "https://microsoftgraph.chinacloudapi.cn/.default",
        resource: "https://microsoftgraph.chinacloudapi.cn",
    },
];

impl Cloud {
    /// Every supported cloud.
    pub const ALL: [Cloud; 4] = [Cloud::Global, Cloud::UsGov, Cloud::UsDod, Cloud::China];

    /// This cloud's endpoints.
    pub fn endpoints(self) -> &'static CloudEndpoints {
        &TABLE[self as usize]
    }

    /// The configuration name (`global`, `us-gov`, `us-dod`, `china`).
    pub fn name(self) -> &'static str {
        self.endpoints().name
    }

    /// The cloud whose Graph host is `host` (case-insensitive), if any.
    pub fn by_graph_host(host: &str) -> Option<Cloud> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.endpoints().graph_host.eq_ignore_ascii_case(host))
    }

    /// The clouds whose authority is `host`, primary host or alias (US Gov and DoD share one).
    pub fn by_login_host(host: &str) -> impl Iterator<Item = Cloud> + '_ {
        Cloud::ALL.into_iter().filter(move |c| {
            let e = c.endpoints();
            e.login_host.eq_ignore_ascii_case(host)
                || e.login_aliases.iter().any(|a| a.eq_ignore_ascii_case(host))
        })
    }

    /// The valid configuration names, for error messages.
    pub fn valid_names() -> String {
        TABLE.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `GRAPHGATE_CLOUD` named no known cloud.
#[derive(Debug, thiserror::Error)]
#[error("unknown cloud {given:?}: valid clouds are {}", Cloud::valid_names())]
pub struct UnknownCloud {
    given: String,
}

impl FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCloud {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_consistent() {
        for cloud in Cloud::ALL {
            let e = cloud.endpoints();
            assert_eq!(e.name.parse::<Cloud>().ok(), Some(cloud));
            assert_eq!(e.scope, format!("https://{}/.default", e.graph_host));
            assert_eq!(e.resource, format!("https://{}", e.graph_host));
            assert_eq!(Cloud::by_graph_host(e.graph_host), Some(cloud));
            assert!(Cloud::by_login_host(e.login_host).any(|c| c == cloud));
        }
    }

    #[test]
    fn unknown_cloud_lists_the_valid_ones() {
        let err = "germany".parse::<Cloud>().unwrap_err().to_string();
        assert!(err.contains("germany"), "{err}");
        for name in ["global", "us-gov", "us-dod", "china"] {
            assert!(err.contains(name), "{err}");
        }
    }
}
