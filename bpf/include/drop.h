/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every metrics/drop reason the datapath emits, with Cilium's codes
 * (bpf/lib/drop_reasons.h). Programs return drops negated. The one list:
 * seta-core's reason names are tested against this file. */
#pragma once

#define REASON_FORWARDED 0

#define DROP_INVALID_SOURCE_IP 132
#define DROP_POLICY 133
#define DROP_INVALID 134
#define DROP_UNSUPPORTED_L3 139
#define DROP_WRITE_ERROR 141
#define DROP_NO_TUNNEL_KEY 147
#define DROP_UNKNOWN_TARGET 150
#define DROP_CSUM_L3 153
#define DROP_CSUM_L4 154
#define DROP_CT_MAP_INSERTION_FAILED 155
#define DROP_NO_SERVICE 158
#define DROP_NO_TUNNEL_ENDPOINT 160
#define DROP_NAT_NO_MAPPING 167
#define DROP_FRAG_NOT_FOUND 175
#define DROP_NOT_IN_SRC_RANGE 177
#define DROP_POLICY_DENY 181
#define DROP_TTL_EXCEEDED 196
#define DROP_EP_NOT_READY 203
