// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Never loaded: one global of every struct in include/abi.h, so the BTF of
 * this object describes each of them completely. The ABI test compares that
 * BTF with seta-abi (the programs' own BTF keeps only the types their maps
 * and functions name). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "include/abi.h"

struct endpoint_key abi_endpoint_key;
struct endpoint_info abi_endpoint_info;
struct ipcache_key abi_ipcache_key;
struct remote_endpoint_info abi_remote_endpoint_info;
struct metrics_value abi_metrics_value;
struct policy_key abi_policy_key;
struct policy_entry abi_policy_entry;
struct ct_key abi_ct_key;
struct ct_entry abi_ct_entry;
struct seta_event abi_seta_event;
struct seta_sock_event abi_seta_sock_event;
struct seta_debug_event abi_seta_debug_event;
struct drop_payload abi_drop_payload;
struct lxc_self abi_lxc_self;
struct sock_revnat_key abi_sock_revnat_key;
struct sock_revnat_entry abi_sock_revnat_entry;
struct frag4_key abi_frag4_key;
struct frag4_ports abi_frag4_ports;

char __license[] SEC("license") = "Dual BSD/GPL";
