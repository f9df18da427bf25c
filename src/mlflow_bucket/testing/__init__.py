"""Test helpers: cloud-storage emulators, a fault-injecting proxy and a pytest plugin."""
