#!/usr/bin/env python3
"""Writes models/centring-text.txt: the public text whose mean embedding the
encoder's features are centred on (models/ENCODER.md, "Centring"). It is
ours, written for the purpose, never a tenant's: the unique messages of
Sigilo's synthetic Portuguese conversation set, plus English customer
messages from the templates below, so the mean sits between the two
languages' short chat messages.

Usage:
  swift run -c release sigilo-eval synth --out /tmp/centring --tenants 8 --seed 11 --holdout 0
  tools/gen-centring-text.py /tmp/centring > models/centring-text.txt
"""
import glob, itertools, json, os, sys

ENGLISH = [
    ("I want to {verb} my {thing}", dict(verb=["cancel", "change", "check", "update", "pay for", "track", "renew", "close"],
                                       thing=["order", "card", "subscription", "booking", "account", "plan", "delivery", "invoice"])),
    ("where is my {thing}?", dict(thing=["package", "refund", "order", "new card", "parcel", "receipt", "transfer", "delivery"])),
    ("how do I {task}", dict(task=["reset my password", "change my address", "get a refund", "talk to someone", "pay by card",
                                   "top up my account", "find my order number", "set a reminder", "turn off notifications",
                                   "book a table", "return an item", "add a new user"])),
    ("can you {ask}?", dict(ask=["help me", "call me back", "send me the invoice", "tell me the opening hours", "check the weather",
                                 "book a flight to Boston", "set an alarm for 7am", "play some music", "translate this to Spanish",
                                 "explain this charge", "transfer me to a person", "confirm my appointment"])),
    ("{greeting}", dict(greeting=["hi", "hello there", "good morning", "good evening", "thanks a lot!", "ok thank you", "bye",
                                  "hey, anyone there?", "thank you so much 🙏", "great, thanks 👍"])),
    ("my {thing} {problem}", dict(thing=["card", "payment", "app", "order", "transfer", "account", "phone"],
                                  problem=["is not working", "was declined", "arrived broken", "is late", "was charged twice",
                                           "keeps crashing", "is blocked"])),
    ("what is {question}", dict(question=["the delivery fee", "my balance", "the exchange rate today", "your return policy",
                                          "the weather tomorrow", "the status of my order", "the price of the large one",
                                          "15% of 80", "the time in Tokyo", "my credit limit"])),
    ("I {feeling} {reason}", dict(feeling=["am angry because", "am confused because", "need help because", "am worried because"],
                                  reason=["nobody answered me", "the product never came", "I was charged without reason",
                                          "the website is down", "I lost my card"])),
    ("do you {offer}?", dict(offer=["deliver on weekends", "accept apple pay", "ship abroad", "have this in blue",
                                    "open on sundays", "offer student discounts", "have a phone number"])),
    ("please {request}", dict(request=["cancel it", "refund me", "hurry up", "send it again", "let me speak to a human",
                                       "remove my data", "stop sending me messages", "change the date to friday"])),
]


def english():
    for template, slots in ENGLISH:
        names = list(slots)
        for values in itertools.product(*(slots[n] for n in names)):
            yield template.format(**dict(zip(names, values)))


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit(__doc__)
    seen, lines = set(), []
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.jsonl"))):
        for line in open(path, encoding="utf-8"):
            if line.strip():
                text = json.loads(line)["text"].replace("\n", " ").strip()
                if text and text not in seen:
                    seen.add(text)
                    lines.append(text)
    portuguese = len(lines)
    for text in english():
        if text not in seen:
            seen.add(text)
            lines.append(text)
    print("%d Portuguese and %d English messages" % (portuguese, len(lines) - portuguese), file=sys.stderr)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
