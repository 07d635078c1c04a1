//! What the emulator knows of Microsoft's public surface, written from Microsoft's
//! documentation (the national clouds' hosts, Graph's API versions, the Intune permission,
//! Graph's error JSON), never taken from the gateway's code: the emulator stands for
//! Microsoft, so it checks the gateway against its own reading.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// One Microsoft national cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// Worldwide service.
    Global,
    /// US Government L4 (GCC High).
    UsGov,
    /// US Government L5 (DoD).
    UsDod,
    /// China, operated by 21Vianet.
    China,
}

/// A cloud's Graph and Entra hosts, as Microsoft's national-cloud deployment pages list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudHosts {
    /// The name graphgate's `--cloud` uses.
    pub name: &'static str,
    /// Graph's host.
    pub graph_host: &'static str,
    /// Entra's authority host.
    pub login_host: &'static str,
    /// Other authority hosts Entra's instance discovery lists for the cloud.
    pub login_aliases: &'static [&'static str],
    /// The `.default` scope of Graph in the cloud.
    pub scope: &'static str,
    /// The token audience (Graph's resource URI).
    pub resource: &'static str,
}

const HOSTS: [CloudHosts; 4] = [
    CloudHosts {
        name: "global",
        graph_host: "graph.microsoft.com",
        login_host: "login.microsoftonline.com",
        login_aliases: &[],
        scope: "https://graph.microsoft.com/.default",
        resource: "https://graph.microsoft.com",
    },
    CloudHosts {
        name: "us-gov",
        graph_host: "graph.microsoft.us",
        login_host: "login.microsoftonline.us",
        login_aliases: &["login.usgovcloudapi.net"],
        scope: "https://graph.microsoft.us/.default",
        resource: "https://graph.microsoft.us",
    },
    CloudHosts {
        name: "us-dod",
        graph_host: "dod-graph.microsoft.us",
        login_host: "login.microsoftonline.us",
        login_aliases: &["login.usgovcloudapi.net"],
        scope: "https://dod-graph.microsoft.us/.default",
        resource: "https://dod-graph.microsoft.us",
    },
    CloudHosts {
        name: "china",
        graph_host: "microsoftgraph.chinacloudapi.cn",
        login_host: "login.partner.microsoftonline.cn",
        login_aliases: &["login.chinacloudapi.cn"],
        scope: "https://microsoftgraph.chinacloudapi.cn/.default",
        resource: "https://microsoftgraph.chinacloudapi.cn",
    },
];

impl Cloud {
    /// Every national cloud.
    pub const ALL: [Cloud; 4] = [Cloud::Global, Cloud::UsGov, Cloud::UsDod, Cloud::China];

    /// The cloud's hosts.
    pub fn endpoints(self) -> &'static CloudHosts {
        &HOSTS[self as usize]
    }

    /// `global`, `us-gov`, `us-dod` or `china`.
    pub fn name(self) -> &'static str {
        self.endpoints().name
    }

    /// The cloud whose Graph host is `host` (case-insensitive).
    pub fn by_graph_host(host: &str) -> Option<Cloud> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.endpoints().graph_host.eq_ignore_ascii_case(host))
    }

    /// The clouds whose authority is `host`, primary or alias (US Gov and DoD share one).
    pub fn by_login_host(host: &str) -> impl Iterator<Item = Cloud> + '_ {
        Cloud::ALL.into_iter().filter(move |c| {
            let e = c.endpoints();
            e.login_host.eq_ignore_ascii_case(host)
                || e.login_aliases.iter().any(|a| a.eq_ignore_ascii_case(host))
        })
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown cloud {s:?}"))
    }
}

/// A Graph API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `v1.0`.
    V1,
    /// `beta`.
    Beta,
}

impl ApiVersion {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }

    /// A version segment, case-insensitively (as Graph reads it).
    pub fn parse(segment: &str) -> Option<Self> {
        [ApiVersion::V1, ApiVersion::Beta]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(segment))
    }
}

/// The application permission Intune's privileged device actions need.
pub const PRIV_OPS: &str = "DeviceManagementManagedDevices.PrivilegedOperations.All";

/// Whether `s` is a GUID in its 8-4-4-4-12 hex form.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Graph's error JSON: `{"error":{"code","message","innerError":{"date","request-id",
/// "client-request-id"}}}`, the date without a zone suffix as Graph writes it.
pub fn error_body(code: &str, message: &str, request_id: &str, client_request_id: &str) -> Bytes {
    let date = crate::clock::utc_now()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let body = serde_json::json!({"error": {
        "code": code,
        "message": message,
        "innerError": {
            "date": date,
            "request-id": request_id,
            "client-request-id": client_request_id,
        },
    }});
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cloud_is_found_by_its_hosts_and_name() {
        for cloud in Cloud::ALL {
            let e = cloud.endpoints();
            assert_eq!(e.name.parse::<Cloud>(), Ok(cloud));
            assert_eq!(e.scope, format!("https://{}/.default", e.graph_host));
            assert_eq!(e.resource, format!("https://{}", e.graph_host));
            assert_eq!(Cloud::by_graph_host(e.graph_host), Some(cloud));
            assert!(Cloud::by_login_host(e.login_host).any(|c| c == cloud));
        }
        assert_eq!(ApiVersion::parse("V1.0"), Some(ApiVersion::V1));
        assert!(is_guid("0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb") && !is_guid("0b6f2f1e"));
    }
}
