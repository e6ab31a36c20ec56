"""libvirt adapter: thin wrappers over libvirt-python (and libvirt_qemu for the guest agent)."""
