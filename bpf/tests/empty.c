// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Baseline for the per-packet benchmark: a tc program that does nothing. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int empty(struct __sk_buff *ctx)
{
	return TC_ACT_OK;
}

char __license[] SEC("license") = "Dual BSD/GPL";
