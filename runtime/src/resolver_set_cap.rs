//! Test of the name sets' bound (`crate::nft::NAME_SET_SIZE`): a full set
//! takes no new address, in a namespace of the test's own.

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::nft::{self, NAME_SET_SIZE};

    #[test]
    fn a_full_name_set_takes_no_new_address() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
            let policy = crate::policy::EgressPolicy {
                allow: vec!["*.cap.test tcp 443".into()],
                resolvers: vec!["192.0.2.53:53".into()],
                ..Default::default()
            };
            let egress = crate::egress::Egress::from_policy(&policy).unwrap();
            let table = crate::egress::table(&egress);
            let (batch, acks) = nft::batch(&table);
            nft::apply_in_current_netns(&batch, acks).expect("table");
            let set = crate::egress::name_set(0, false).name;
            let sock = nft::socket_in_current_netns().unwrap();
            let addr = |i: u32| (IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 600u32);
            let all: Vec<(IpAddr, u32)> = (0..NAME_SET_SIZE).map(addr).collect();
            for chunk in all.chunks(256) {
                let (b, n) = nft::add_elements_batch(&set, chunk).unwrap();
                nft::send_batch(&sock, &b, n).expect("below the cap");
            }
            let (b, n) = nft::add_elements_batch(&set, &[addr(NAME_SET_SIZE)]).unwrap();
            let full = nft::send_batch(&sock, &b, n);
            assert!(full.is_err(), "a full set took one more address");
        })
        .join()
        .expect("netns thread");
    }
}
