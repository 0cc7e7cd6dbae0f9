use super::*;

#[test]
fn a_taken_host_port_is_refused_with_what_to_do() {
    let (held, port) = bind_host_side(0).unwrap();
    assert_ne!(port, 0);
    let err = bind_host_side(port).unwrap_err().to_string();
    assert!(err.contains("is the port taken? ask for another"), "{err}");
    drop(held);
}
