"""Adapters to hypervisors: libvirt connections, the guest agent, and the test lab."""
