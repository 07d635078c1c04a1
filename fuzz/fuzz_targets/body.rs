//! Request bodies of every catalog operation: `schema::parse_strict` then `schema::validate`
//! and `validate_request` (the Graph body: as Graph reads it, and with the gateway's own
//! rules), and `simple::to_graph_body` (the flat simplified-API body) followed by
//! `validate_request` of the body it builds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = graphgate::operation::schema::parse_strict(data) else {
        return;
    };
    for op in graphgate::operation::catalog::CATALOG {
        let _ = graphgate::operation::schema::validate(&value, op.params, op.wrapper);
        let _ = graphgate::operation::schema::validate_request(&value, op.params, op.wrapper);
        if let Some(simple) = op.simple {
            if let Ok(graph_body) = graphgate::operation::simple::to_graph_body(op, simple, &value) {
                let _ = graphgate::operation::schema::validate_request(&graph_body, op.params, op.wrapper);
            }
        }
    }
});
