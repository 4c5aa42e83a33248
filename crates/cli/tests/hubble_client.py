#!/usr/bin/python3
"""An independent Hubble client: Python grpcio with message classes that
protoc generates from seta's .proto files (no seta code). Usage:

    hubble_client.py GENERATED_DIR SOCKET status|nodes|flows N|follow|health SERVICE|debug N

Prints one JSON document."""
import json
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from flow import flow_pb2  # noqa: E402
from observer import observer_pb2  # noqa: E402


def call(channel, method, req, resp, stream=False):
    path = "/observer.Observer/" + method
    if stream:
        return channel.unary_stream(path, request_serializer=req.SerializeToString,
                                    response_deserializer=resp.FromString)
    return channel.unary_unary(path, request_serializer=req.SerializeToString,
                               response_deserializer=resp.FromString)


def flow_view(r):
    f = r.flow
    return {
        "node": r.node_name,
        "verdict": flow_pb2.Verdict.Name(f.verdict),
        "drop_reason": flow_pb2.DropReason.Name(f.drop_reason_desc),
        "source_ip": f.IP.source,
        "destination_ip": f.IP.destination,
        "destination_pod": f.destination.namespace + "/" + f.destination.pod_name,
        "source_identity": f.source.identity,
        "destination_port": f.l4.TCP.destination_port,
        "syn": f.l4.TCP.flags.SYN,
        "direction": flow_pb2.TrafficDirection.Name(f.traffic_direction),
        "is_reply": f.is_reply.value if f.HasField("is_reply") else None,
    }


def main():
    _, _, sock, what, *rest = sys.argv
    ch = grpc.insecure_channel("unix://" + sock)
    if what == "status":
        r = observer_pb2.ServerStatusRequest()
        s = call(ch, "ServerStatus", r, observer_pb2.ServerStatusResponse)(r, timeout=10)
        out = {"num_flows": s.num_flows, "max_flows": s.max_flows, "seen_flows": s.seen_flows,
               "uptime_ns": s.uptime_ns, "connected": s.num_connected_nodes.value, "version": s.version}
    elif what == "nodes":
        r = observer_pb2.GetNodesRequest()
        n = call(ch, "GetNodes", r, observer_pb2.GetNodesResponse)(r, timeout=10)
        out = [{"name": x.name, "state": x.state, "max_flows": x.max_flows} for x in n.nodes]
    elif what == "flows":
        r = observer_pb2.GetFlowsRequest(
            number=int(rest[0]),
            whitelist=[flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], destination_port=["8080"])])
        out = [flow_view(x) for x in call(ch, "GetFlows", r, observer_pb2.GetFlowsResponse, True)(r, timeout=10)
               if x.HasField("flow")]
    elif what == "health":
        from health.v1 import health_pb2  # noqa: E402
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                               response_deserializer=health_pb2.HealthCheckResponse.FromString)
        try:
            r = check(health_pb2.HealthCheckRequest(service=rest[0]), timeout=10)
            out = {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}
        except grpc.RpcError as e:
            out = {"code": e.code().name}
    elif what == "follow":
        r = observer_pb2.GetFlowsRequest(
            follow=True, whitelist=[flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], destination_port=["8080"])])
        out = None
        for x in call(ch, "GetFlows", r, observer_pb2.GetFlowsResponse, True)(r, timeout=30):
            if x.HasField("flow"):
                out = flow_view(x)
                break
    elif what == "debug":
        r = observer_pb2.GetDebugEventsRequest(number=int(rest[0]))
        out = [{"node": x.node_name, "type": flow_pb2.DebugEventType.Name(x.debug_event.type),
                "message": x.debug_event.message, "cpu": x.debug_event.cpu.value,
                "source_pod": x.debug_event.source.namespace + "/" + x.debug_event.source.pod_name}
               for x in call(ch, "GetDebugEvents", r, observer_pb2.GetDebugEventsResponse, True)(r, timeout=10)]
    else:
        raise SystemExit("unknown request " + what)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
