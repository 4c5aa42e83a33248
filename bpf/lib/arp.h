/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#pragma once

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

struct arphdr {
	__be16 ar_hrd;
	__be16 ar_pro;
	__u8 ar_hln;
	__u8 ar_pln;
	__be16 ar_op;
};

struct arp_eth {
	__u8 sha[ETH_ALEN];
	__be32 sip;
	__u8 tha[ETH_ALEN];
	__be32 tip;
} __attribute__((packed));

/* Answer an ARP request in place with `mac` as the answer (the host-side veth
 * MAC, which routes everything for the pod). Like Cilium, any target except
 * the sender's own address is answered: the pod's only neighbour is the
 * router. Returns 0 when the packet became a reply, -reason otherwise. */
static __always_inline int arp_respond(struct __sk_buff *ctx, const __u8 *mac)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct arphdr *arp = data + ETH_HLEN;
	struct arp_eth *body = (void *)(arp + 1);
	__be32 sip, tip;

	if ((void *)(body + 1) > data_end)
		return -DROP_INVALID;
	if (arp->ar_hrd != bpf_htons(ARPHRD_ETHER) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
	    arp->ar_hln != ETH_ALEN || arp->ar_pln != 4 ||
	    arp->ar_op != bpf_htons(ARPOP_REQUEST))
		return -DROP_INVALID;
	sip = body->sip;
	tip = body->tip;
	if (tip == sip)     /* gratuitous / duplicate address detection */
		return -DROP_UNKNOWN_TARGET;

	__builtin_memcpy(body->tha, body->sha, ETH_ALEN);
	__builtin_memcpy(body->sha, mac, ETH_ALEN);
	body->tip = sip;
	body->sip = tip;
	arp->ar_op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return 0;
}
