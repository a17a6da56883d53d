# Bakes the shipshape RPM into the latest ECS-optimized Amazon Linux 2023 AMI and
# enables its units. Build the RPM first (packaging/build.sh), then:
#   packer init packaging/packer            # packer >= 1.7: fetches the amazon plugin
#   packer build -var region=eu-west-1 \
#     -var rpm=target/packages/shipshape-0.1.0-1.x86_64.rpm packaging/packer
# Instances launched from the AMI get their cluster and secret IDs from user data
# (userdata/ecs-al2023.sh or .yaml); nothing account-specific is baked in. Require
# IMDSv2 in the launch template (HttpTokens=required); bootstrap uses IMDSv2 only.

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region to build in."
}

variable "rpm" {
  type        = string
  description = "Path of the shipshape RPM built by packaging/build.sh."
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "x86_64 or arm64; must match the RPM."
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "ami_name_prefix" {
  type    = string
  default = "shipshape-ecs-al2023"
}

source "amazon-ebs" "ecs_al2023" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "ec2-user"
  ami_name      = "${var.ami_name_prefix}-${var.arch}-{{timestamp}}"

  source_ami_filter {
    filters = {
      name                = "al2023-ami-ecs-hvm-*-${var.arch}"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  tags = {
    Name      = "${var.ami_name_prefix}-${var.arch}"
    BaseAMI   = "{{ .SourceAMIName }}"
    Shipshape = "baked"
  }
}

build {
  sources = ["source.amazon-ebs.ecs_al2023"]

  provisioner "file" {
    source      = var.rpm
    destination = "/tmp/shipshape.rpm"
  }

  provisioner "shell" {
    inline = [
      "set -eux",
      "sudo dnf install -y /tmp/shipshape.rpm",
      "rm -f /tmp/shipshape.rpm",
      "shipshape --version",
      "sudo shipshape --config /etc/shipshape/shipshape.toml check",
      # The bootstrap unit is RequiredBy=ecs.service: it runs before the ECS agent on
      # every boot, after user data has written /etc/shipshape/shipshape.toml.
      "sudo systemctl enable shipshape-bootstrap.service shipshape.service",
      # The ECS AMI must not boot with the build instance's agent state.
      "sudo systemctl stop ecs || true",
      "sudo rm -rf /var/lib/ecs/data/* /var/lib/shipshape/*",
    ]
  }
}
