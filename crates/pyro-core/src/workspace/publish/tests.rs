use super::*;

#[test]
fn ports_to_publish_parse_and_bad_ones_say_the_form() {
    let m: PortMapping = "8080".parse().unwrap();
    assert_eq!((m.host_port, m.guest_port), (0, 8080));
    let m: PortMapping = "18080:80".parse().unwrap();
    assert_eq!((m.host_port, m.guest_port), (18080, 80));
    for bad in ["", "0", "http", "1:2:3", "70000", ":80", "80:"] {
        let e = bad.parse::<PortMapping>().unwrap_err().to_string();
        assert!(e.contains("HOST_PORT:GUEST_PORT"), "{bad}: {e}");
    }
}
