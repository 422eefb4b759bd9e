"""Cloudflare Workers AI over its REST API."""
