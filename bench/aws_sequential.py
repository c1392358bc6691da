#!/usr/bin/env python3
"""The baseline for bench/aws: the topology of bench/aws-scale built and torn
down one AWS call at a time with boto3, the way a hand-written script does it
(each call waits for the one before; waits poll until ready).

Usage: aws_sequential.py ENDPOINT N
Prints one JSON line: {"n", "resources", "up_s", "down_s", "calls"}.
N=0 only warms moto up (one read per service: moto loads a service's
backend on its first call, which takes about a second).
Run with the python of moto's virtualenv (it has boto3); talks only to ENDPOINT.
"""
import json, sys, time

import boto3

ENDPOINT, N = sys.argv[1], int(sys.argv[2])
REGION = "us-east-1"
CALLS = 0

session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
)


def count(**_):
    global CALLS
    CALLS += 1


session.events.register("before-send", count)
client = lambda name: session.client(name, endpoint_url=ENDPOINT)
ec2, elb, r53, s3, sm = (client(s) for s in ("ec2", "elbv2", "route53", "s3", "secretsmanager"))

# An OpenSSH ed25519 public key (any valid one: only its format is checked).
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0AXh3iTR7dzqExkr1Lvj0zuHQ9Yo4zRzW8IUsDc9h bench"


def wait(check, what):
    deadline = time.time() + 120
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def up():
    made = {}
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    subnets, assocs = [], []
    for i in range(N):
        az = f"{REGION}{'ab'[i % 2]}"
        sn = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        subnets.append(sn)
        assocs.append(ec2.associate_route_table(RouteTableId=rt, SubnetId=sn)["AssociationId"])
    groups = []
    for i in range(N):
        sg = ec2.create_security_group(GroupName=f"bench-fw-{i}", Description="bench", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=sg,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )
        groups.append(sg)
    ec2.import_key_pair(KeyName="bench-deployer", PublicKeyMaterial=PUBLIC_KEY.encode())
    instances = []
    for i in range(2 * N):
        r = ec2.run_instances(
            ImageId=ami, InstanceType="t3.small", MinCount=1, MaxCount=1,
            SubnetId=subnets[i % N], SecurityGroupIds=[groups[i % N]], KeyName="bench-deployer",
            UserData="#!/bin/sh\necho hello\n", ClientToken=f"bench-web-{i}",
        )
        iid = r["Instances"][0]["InstanceId"]
        wait(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running", iid)
        instances.append(iid)
    buckets = []
    for i in range(N):
        s3.create_bucket(Bucket=f"bench-bucket-{i}")
        buckets.append(f"bench-bucket-{i}")
    secrets = [sm.create_secret(Name=f"bench-secret-{i}", SecretString="s3cr3t")["ARN"] for i in range(N)]
    zone = r53.create_hosted_zone(Name="bench.test", CallerReference=f"bench-{time.time()}")["HostedZone"]["Id"]
    for i in range(N):
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
                "Name": f"h{i}.bench.test", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": f"10.0.0.{i + 1}"}]}}]},
        )
    lb = elb.create_load_balancer(Name="bench-lb", Subnets=subnets[:2] if N > 1 else subnets, SecurityGroups=groups[:1], Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
    wait(lambda: elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["State"]["Code"] == "active", "the load balancer")
    tg = elb.create_target_group(Name="bench-tg", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/")["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 8080} for i in instances])
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]["ListenerArn"]
    made.update(vpc=vpc, igw=igw, rt=rt, subnets=subnets, assocs=assocs, groups=groups, instances=instances,
                buckets=buckets, secrets=secrets, zone=zone, lb=lb, tg=tg, listener=listener)
    resources = 1 + N + N + 1 + 2 * N + N + N + 1 + N + 1
    return made, resources


def down(m):
    elb.delete_listener(ListenerArn=m["listener"])
    elb.delete_load_balancer(LoadBalancerArn=m["lb"])
    elb.delete_target_group(TargetGroupArn=m["tg"])
    for i in range(N):
        r53.change_resource_record_sets(
            HostedZoneId=m["zone"],
            ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": {
                "Name": f"h{i}.bench.test", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": f"10.0.0.{i + 1}"}]}}]},
        )
    r53.delete_hosted_zone(Id=m["zone"])
    for s in m["secrets"]:
        sm.delete_secret(SecretId=s, ForceDeleteWithoutRecovery=True)
    for b in m["buckets"]:
        s3.delete_bucket(Bucket=b)
    for iid in m["instances"]:
        ec2.terminate_instances(InstanceIds=[iid])
        wait(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated", iid)
    ec2.delete_key_pair(KeyName="bench-deployer")
    for sg in m["groups"]:
        ec2.delete_security_group(GroupId=sg)
    for a in m["assocs"]:
        ec2.disassociate_route_table(AssociationId=a)
    for sn in m["subnets"]:
        ec2.delete_subnet(SubnetId=sn)
    ec2.delete_route_table(RouteTableId=m["rt"])
    ec2.detach_internet_gateway(InternetGatewayId=m["igw"], VpcId=m["vpc"])
    ec2.delete_internet_gateway(InternetGatewayId=m["igw"])
    ec2.delete_vpc(VpcId=m["vpc"])


if N == 0:
    ec2.describe_vpcs(); elb.describe_load_balancers(); r53.list_hosted_zones()
    s3.list_buckets(); sm.list_secrets(); client("rds").describe_db_instances()
    print("{}")
    sys.exit(0)

t0 = time.time()
made, resources = up()
t1 = time.time()
down(made)
t2 = time.time()
print(json.dumps({"n": N, "resources": resources, "up_s": round(t1 - t0, 2), "down_s": round(t2 - t1, 2), "calls": CALLS}))
