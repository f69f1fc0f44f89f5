//! Property tests of the ACME readers: directory, order, authorization, problem documents,
//! renewal information, link headers, timestamps, and the response checks; any JSON, any
//! status and headers: an error, never a panic. See src/proptests.rs (PROPTEST_CASES).

use proptest::prelude::*;

use super::flow::renewal_info;
use super::types::{Authorization, Order};
use super::Directory;
use super::{link, problem, timestamp, Problem};
use crate::proptests::{cases, hostile_response, json_value};

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn json_replies_never_panic(doc in json_value(), status in 0u16..1000) {
        let _ = Directory::from_json(doc.clone());
        let _ = Order::from_json(&doc, "https://ca.test/order/1");
        let _ = Authorization::from_json(&doc, "https://ca.test/authz/1");
        let p = Problem::from_json(&doc, status, None);
        let _ = (p.acme_type(), p.is_retryable(), p.message());
    }

    #[test]
    fn responses_never_panic(resp in hostile_response(), max in 0usize..512) {
        let _ = Directory::from_response(&resp);
        let _ = problem::check_response(&resp, max, 1_700_000_000.0);
        let _ = renewal_info::parse_renewal_info(&resp, 1_700_000_000.0);
        let _ = link::links(&resp, "alternate", "https://ca.test/cert/1");
        let _ = link::links(&resp, "up", "");
    }

    #[test]
    fn link_headers_and_urls_never_panic(field in "\\PC{0,200}", base in "\\PC{0,60}",
                                         target in "\\PC{0,60}") {
        let _ = link::parse_field(&field);
        let _ = link::parse_field(&format!("<{target}>; rel=\"{field}\", <{base}>;rel=up"));
        let _ = link::resolve(&base, &target);
        let _ = link::resolve("https://ca.test/a/b", &target);
    }

    #[test]
    fn timestamps_never_panic(s in "\\PC{0,40}",
                              d in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})") {
        let _ = timestamp::parse_rfc3339(&s);
        let _ = timestamp::parse_http_date(&s);
        let _ = timestamp::parse_rfc3339(&d);
    }
}
