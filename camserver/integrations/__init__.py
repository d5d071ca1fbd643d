"""Integrations: Prometheus metrics, webhooks, MQTT with Home Assistant discovery, phone notifications."""
