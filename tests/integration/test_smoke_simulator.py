import anthropic


def test_sdk_gets_a_reply_from_the_simulator(simulator_url: str) -> None:
    client = anthropic.Anthropic(base_url=simulator_url, api_key="test-key")
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.usage.output_tokens > 0
