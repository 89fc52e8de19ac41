"""Seeded procedural data for the embedded tasks, in the Hugging Face hub's row formats.

Nothing is stored: :func:`summarization_row`, :func:`dialogue_row` and :func:`translation_row` compute row
``index`` of a split on demand, so an env worker only pays for the rows it uses (tens of microseconds each)
and pickles nothing but three integers. The same ``(split, index, difficulty)`` gives the same row in every
process and on every platform: each row has its own :class:`random.Random`, seeded from a string such as
``"summarization/train/1/42"`` (string seeds go through SHA-512, unlike the salted built-in ``hash``).

==============  =======================================  =======================================
task            row format (hub data set it mimics)      reference
==============  =======================================  =======================================
summarization   ``{"document": str, "summary": str}``    one sentence combining the key facts
                (XSum)
dialogue        ``{"dialog": list[str]}`` (DailyDialog)  the LAST turn; the earlier turns are the
                                                         history (plain strings, no speaker tags)
translation     ``{"translation": {"en": str,            the ``"syn"`` sentence
                "syn": str}}`` (WMT16)
==============  =======================================  =======================================

**Difficulty** (1..3) makes documents longer with more distractor sentences and a shuffled order,
dialogues longer (small talk, a change of mind the reply must follow) and sentences longer (adjectives,
numbers, places, times, two clauses).

**Disjoint splits, by construction.** Every row is built from discrete *key facts* (for a summary: the
event, town, day, number...; for a dialogue: the facts the reply repeats; for a translation: every word
choice). The facts fold into an integer key and one *pivot* fact is drawn last so that
``(key + pivot) % 20`` falls in the split's buckets (train 0..17, validation 18, test 19). Identical key
facts therefore always land in the same split, and since a row's text spells out its key facts, no
document, reply or source sentence of one split can appear in another.

**The "syn" language** is a rule-based invented language: a fixed lexicon maps every English word to an
invented word (derived from a hash of the word, so it never changes when the word lists grow), adjectives
follow their noun, the verb ends its clause (subject, time, object, place, verb), places take
postpositions, nouns take the plural suffix ``-ri``, verbs the past suffix ``-ko`` or the future suffix
``-sa`` (English "will" has no word of its own), and numbers stay digits. Learnable, never a copy.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from text_envs.data.drawing import DIFFICULTIES, SPLIT_SIZES, Draw, GeneratorIndexError, check_row, upper_first

__all__ = [
    "SPLIT_SIZES",
    "DIFFICULTIES",
    "TRANSLATION_LANGS",
    "SYN_LEXICON",
    "NAME_POOLS",
    "GeneratorIndexError",
    "summarization_row",
    "dialogue_row",
    "translation_row",
]

TRANSLATION_LANGS = ("en", "syn")


# ---------------------------------------------------------------------------------------------------
# Shared pools
# ---------------------------------------------------------------------------------------------------

TOWNS = (
    "Marlow", "Ashford", "Bexley", "Caldwell", "Dunmore", "Elmbridge", "Farley", "Glenmoor", "Harwood",
    "Ivybridge", "Kingsley", "Langford", "Millbrook", "Northam", "Oakham", "Penrith", "Queensbury", "Radley",
    "Stanwick", "Thornbury", "Upton", "Westbury", "Yarford", "Alnwick", "Bramley", "Chesham", "Dorking",
    "Easton", "Fenwick", "Grantham", "Hexham", "Ilford", "Kendal", "Ledbury", "Malton", "Newbury", "Olney",
    "Pickering", "Redhill", "Selby", "Tetbury", "Uckfield", "Ventnor", "Wetherby", "Amble", "Barnard",
    "Cromer", "Dalton", "Ewell", "Frome", "Goole", "Hythe", "Keswick", "Lydney", "Morpeth", "Nailsea",
    "Otley", "Petworth", "Ripley", "Sandbach", "Thirsk", "Ulverston", "Wantage", "Whitby", "Bingley",
    "Clitheroe", "Diss", "Eye", "Filey", "Garstang", "Holt", "Ilkley", "Kirkby", "Louth", "Minehead",
    "Nantwich", "Oundle", "Pershore", "Romsey", "Settle",
)
FIRST_NAMES = (
    "Sarah", "James", "Emily", "David", "Laura", "Michael", "Hannah", "Daniel", "Sophie", "Thomas", "Grace",
    "Oliver", "Chloe", "Jack", "Amelia", "Harry", "Lucy", "George", "Ella", "Samuel", "Megan", "Joseph",
    "Rachel", "Adam", "Katie", "Ben", "Anna", "Peter", "Jessica", "Mark", "Olivia", "Paul", "Ruth", "Simon",
    "Helen", "Andrew", "Claire", "Robert", "Fiona", "Luke", "Zoe", "Ryan", "Alice", "Tom", "Maria", "Karen",
    "Liam", "Nina", "Owen", "Priya", "Ravi", "Aisha", "Omar", "Mei", "Leo", "Ivy", "Noah", "Jade", "Ethan",
    "Rosa",
)
SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Johnson", "Roberts", "Walker", "Wright",
    "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Lewis", "Martin",
    "Jackson", "Clarke", "Clark", "Turner", "Hill", "Scott", "Cooper", "Morris", "Ward", "Moore", "King",
    "Watson", "Baker", "Harrison", "Morgan", "Patel", "Young", "Allen", "Mitchell", "James", "Anderson",
    "Phillips", "Lee", "Bell", "Parker", "Davis", "Collins", "Bennett", "Shaw", "Cook", "Price", "Murphy",
    "Bailey", "Carter", "Khan", "Ahmed", "Fisher", "Mason",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
COMPANIES = (
    "Brightwell Foods", "Northgate Logistics", "Harbour Tech", "Greenfield Energy", "Oakline Furniture",
    "Redstone Engineering", "Silverleaf Software", "Bluewater Bottling", "Kestrel Cars", "Maple Print",
    "Ironbridge Steel", "Sunrise Bakeries", "Meadow Dairies", "Falcon Aviation", "Copperfield Paints",
    "Willow Textiles", "Summit Outdoor", "Riverside Packaging", "Beacon Pharmacy", "Thistle Brewing",
)
TIMES = tuple(f"{h if h <= 12 else h - 12}{':30' if half else ''} {'am' if h < 12 else 'pm'}"
              for h in range(9, 21) for half in (0, 1))  # "9 am" .. "8:30 pm": 24 slots
COLOURS = ("red", "blue", "green", "black", "white", "grey", "brown", "yellow", "pink", "navy")


def _person(d: Draw) -> str:
    return f"{d.free(FIRST_NAMES)} {d.free(SURNAMES)}"


def _other(d: Draw, pool: Sequence[str], avoid: str) -> str:
    x = d.free(pool)
    return x if x != avoid else pool[(pool.index(x) + 1) % len(pool)]


# ---------------------------------------------------------------------------------------------------
# Summarization (XSum-style local news)
# ---------------------------------------------------------------------------------------------------
# An event has key slots ({town}, {day}, {n} and its own pools), ONE summary template (a consistent
# mapping from facts to summary), groups of key sentences (one alternative of each group is used; together
# they carry every key fact, none carries them all) and detail sentences (quotes, background).
# Free slots of key/detail sentences: {person} {town2} {month} {k} {k2}; distractors draw their own
# {town2} {day2} {month} {k2} {k3} {person2} {company2}.

_PRODUCTS = ("paper", "furniture", "plastics", "biscuit", "paint", "textile", "glass", "packaging",
             "cheese", "tyre")
_PLACES = ("railway station", "old market", "river", "football ground", "hospital", "town park",
           "ring road", "secondary school", "canal", "industrial estate")
_ROADS = ("A40", "A303", "M5", "A1", "A38", "M62", "A14", "A30", "M6", "A57", "A34", "A49")
_FESTIVALS = ("music", "food", "folk", "comedy", "book", "beer", "film", "jazz", "arts", "flower")
_CHARITIES = ("the Red Cross", "a children's hospice", "a cancer charity", "the local food bank",
              "a dog rescue centre", "the air ambulance", "a mental health charity", "a homeless shelter")
_CHALLENGES = (("running a marathon", "ran a marathon"), ("cycling to Paris", "cycled to Paris"),
               ("climbing three peaks", "climbed three peaks"), ("swimming across a lake", "swam across a lake"),
               ("walking the coast path", "walked the coast path"), ("skydiving", "did a skydive"))
_ITEMS_STOLEN = ("bicycles", "laptops", "phones", "watches", "power tools", "televisions", "handbags",
                 "cameras")
_WARDS = ("children's", "maternity", "cancer", "heart", "emergency", "stroke")
_WORKERS = ("nurses", "bus drivers", "teachers", "rail workers", "bin collectors", "postal workers",
            "paramedics", "cleaners")
_FINDINGS = ("daily walks lower blood pressure", "phones in bedrooms harm sleep", "breakfast helps children learn",
             "music speeds up recovery", "short naps improve memory", "gardening reduces stress",
             "water helps concentration", "reading aloud builds vocabulary")
_ANIMALS = ("dogs", "cats", "horses", "rabbits", "sheep", "goats", "ponies", "ducks")
_PETS = ("cat", "dog", "tortoise", "parrot", "rabbit", "ferret")
_BRIDGES = ("Victoria Bridge", "Mill Lane Bridge", "Station Road Bridge", "Abbey Bridge", "Kings Bridge",
            "Church Street Bridge")
_SCHOOLS = ("St Mary's School", "Hillside Academy", "Park View School", "Castle High School",
            "Riverside College", "Queen Anne School")
_ENERGY = ("Northern Power", "Western Grid", "Eastern Electric", "Central Networks")
_TEAMS = ("Rovers", "United", "Town", "Athletic", "City", "Albion")
_BUS_COMPANIES = ("Arrow Buses", "Coastline Coaches", "Red Kite Travel", "County Connect", "Green Line",
                  "Metro Buses", "Valley Motor Services", "Swift Travel")

_EVENTS: tuple[dict, ...] = (
    dict(
        name="flood", slots={}, n=(2, 1, 40),
        summary="Flooding closed {n} schools in {town} on {day}, the council said.",
        key=(("Heavy rain caused rivers to burst their banks across {town} on {day}.",
              "Floodwater swept through parts of {town} early on {day}.",
              "Streets in {town} were under water on {day} after a night of heavy rain."),
             ("The council said {n} schools had to stay shut because of the water.",
              "A total of {n} schools could not open, according to the council.",
              "Council officials confirmed that {n} schools were closed to pupils.")),
        details=("{person}, a head teacher, said pupils would learn from home until the buildings were safe.",
                 "Parents were told to check the council website for the latest updates.",
                 "Engineers are checking the damage to classrooms and playing fields.",
                 "The Environment Agency said more rain was expected over the next {k} days."),
    ),
    dict(
        name="fire", slots={"product": _PRODUCTS}, n=(6, 1, 40),
        summary="{n} firefighters tackled a fire at a {product} factory in {town} on {day}, the fire service said.",
        key=(("A blaze ripped through a {product} factory overnight.",
              "Flames tore through the main building of a {product} factory."),
             ("Residents in {town} woke on {day} to thick black smoke.",
              "People across {town} reported seeing smoke early on {day}."),
             ("Crews from across the county, {n} in all, worked to put it out, the fire service said.",
              "According to the fire service, {n} crew members were needed to bring it under control.")),
        details=("Nobody was hurt, but nearby homes were told to keep their windows closed.",
                 "{person}, who lives close to the site, said the smoke was thick and black.",
                 "The cause of the fire is not yet known.",
                 "The factory employs about {k2} people."),
    ),
    dict(
        name="homes", slots={"place": _PLACES}, n=(20, 10, 60),
        summary="Plans for {n} new homes near the {place} in {town} were approved by councillors on {day}.",
        key=(("Councillors in {town} voted on {day} to back a new housing development.",
              "A plan for a new housing estate in {town} was given the green light on {day}."),
             ("The scheme will see {n} homes built close to the {place}.",
              "Builders will put up {n} houses on land near the {place}.")),
        details=("Some residents had objected, saying the roads were already too busy.",
                 "{person}, who leads the council, said the town badly needed more homes.",
                 "Work is expected to start in {month}.",
                 "A third of the houses will be for first-time buyers."),
    ),
    dict(
        name="jobs", slots={"company": COMPANIES}, n=(40, 10, 60),
        summary="{company} will create {n} jobs at a new warehouse in {town}, the firm said on {day}.",
        key=(("{company} has announced plans to open a new warehouse in {town}.",
              "A new warehouse is coming to {town}, {company} has confirmed."),
             ("The company said on {day} that the site would bring {n} jobs to the area.",
              "Around {n} people will be hired when the site opens, the firm said on {day}.")),
        details=("The warehouse will be built on the old airfield.",
                 "{person}, the company's chief executive, said {town} was the perfect location.",
                 "Local business leaders welcomed the news.",
                 "The firm already employs {k2} people across the region."),
    ),
    dict(
        name="crash", slots={"road": _ROADS}, n=(2, 1, 24),
        summary="Police shut the {road} near {town} for {n} hours after a crash on {day}.",
        key=(("Two lorries collided on the {road} early on {day}.",
              "A serious crash happened on the {road} on {day} morning."),
             ("Officers kept the road near {town} closed for {n} hours while the lorries were moved.",
              "The stretch near {town} stayed closed for {n} hours, police confirmed.")),
        details=("One driver was taken to hospital with minor injuries.",
                 "Drivers faced long queues on nearby roads.",
                 "{person}, who was stuck in the traffic, said it took {k} hours to get home.",
                 "Police have asked any witnesses to come forward."),
    ),
    dict(
        name="festival", slots={"fest": _FESTIVALS}, n=(1000, 100, 80),
        summary="The {town} {fest} festival drew {n} visitors over the weekend, organisers said on {day}.",
        key=(("The annual {fest} festival returned to {town} at the weekend.",
              "Crowds packed the streets of {town} for the yearly {fest} festival."),
             ("Organisers said on {day} that {n} people had bought tickets.",
              "A total of {n} visitors came through the gates, organisers said on {day}.")),
        details=("Local food stalls and bands from across the country took part.",
                 "{person}, one of the organisers, said it had been the best year yet.",
                 "Extra buses were laid on from {town2}.",
                 "Next year's festival is planned for {month}."),
    ),
    dict(
        name="charity", slots={"charity": _CHARITIES, "challenge": _CHALLENGES, "runner": FIRST_NAMES},
        n=(500, 50, 60),
        summary="{runner} from {town} raised {n} pounds for {charity} after {challenge[0]}.",
        key=(("{runner}, from {town}, {challenge[1]} on {day} to raise money for {charity}.",
              "On {day}, {runner} from {town} {challenge[1]} in aid of {charity}."),
             ("Friends and family have given {n} pounds so far.",
              "The total now stands at {n} pounds, thanks to donations from friends and family.")),
        details=("{runner} said the last part was the hardest.",
                 "The charity said the money would make a real difference.",
                 "{runner} trained for {k} months before the challenge.",
                 "A party was held in {town2} to celebrate."),
    ),
    dict(
        name="theft", slots={"stolen": _ITEMS_STOLEN}, n=(3, 1, 40),
        summary="Thieves stole {n} {stolen} from a shop in {town} on {day}, police said.",
        key=(("A shop in {town} was broken into during the night on {day}.",
              "Burglars forced open the back door of a shop in {town} on {day}."),
             ("Police said {n} {stolen} had been taken.",
              "According to police, {n} {stolen} were taken.")),
        details=("The owner, {person}, said the shop would open again as soon as possible.",
                 "Officers are looking at camera footage from the street.",
                 "It is the second break-in in the area this year.",
                 "Anyone with information has been asked to call the police."),
    ),
    dict(
        name="ward", slots={"ward": _WARDS}, n=(10, 1, 40),
        summary="A {ward} ward with {n} beds is now open at {town} General Hospital, bosses said on {day}.",
        key=(("The first patients moved into the new {ward} unit on {day}.",
              "The doors of the new {ward} unit opened to patients on {day}."),
             ("It is the biggest change at {town} General Hospital for years.",
              "Staff at {town} General Hospital had waited years for the unit."),
             ("The unit has {n} beds and its own team of nurses.",
              "There is room for {n} patients at a time.")),
        details=("The building work took {k} months.",
                 "{person}, a senior nurse, said staff were delighted with the new rooms.",
                 "The hospital said waiting times should now fall.",
                 "Part of the money came from local fundraising."),
    ),
    dict(
        name="strike", slots={"workers": _WORKERS}, n=(100, 20, 50),
        summary="{n} {workers} in {town} will go on strike on {day} over pay, the union said.",
        key=(("The union said {n} of its members had voted to walk out.",
              "A total of {n} union members backed a walkout in a ballot."),
             ("The action by {workers} is about money.",
              "{workers} say their wages have fallen behind prices."),
             ("The strike in {town} will take place on {day}.",
              "Services in {town} will be hit on {day}.")),
        details=("Talks with managers broke down last week.",
                 "{person}, a union official, said staff had no other choice.",
                 "Managers said they were disappointed and wanted more talks.",
                 "Residents have been warned to expect delays."),
    ),
    dict(
        name="study", slots={"finding": _FINDINGS}, n=(200, 50, 40),
        summary="A year-long study of {n} people in {town} suggests {finding}.",
        key=(("Researchers at the University of {town} tracked {n} volunteers for a year.",
              "A team at the University of {town} followed {n} volunteers for twelve months."),
             ("Their paper, published on {day}, says that {finding}.",
              "The results, shared on {day}, show that {finding}.")),
        details=("{person}, who led the research, said more work was needed.",
                 "The study was paid for by a national health charity.",
                 "Experts not involved in the work called the results interesting.",
                 "The team now plans a larger study in {month}."),
    ),
    dict(
        name="bridge", slots={"bridge": _BRIDGES}, n=(2, 1, 30),
        summary="The {bridge} in {town} will close for {n} weeks from {day} for repairs.",
        key=(("Engineers will begin work on the {bridge} on {day}.",
              "Work on the {bridge} is due to start on {day}."),
             ("The crossing, one of the busiest in {town}, will be shut for {n} weeks.",
              "Cracks found last year mean the {town} crossing must close to traffic for {n} weeks.")),
        details=("A diversion will be signed through {town2}.",
                 "{person}, from the highways team, said the work could not wait any longer.",
                 "The bridge was built more than a hundred years ago.",
                 "People on foot will still be able to cross."),
    ),
    dict(
        name="exams", slots={"school": _SCHOOLS}, n=(50, 1, 50),
        summary="{n} per cent of pupils passed their exams at {school} in {town} this year.",
        key=(("Pupils in {town} collected their exam results on {day}.",
              "It was results day for teenagers across {town} on {day}."),
             ("{school} said that {n} per cent of them had passed.",
              "At {school}, {n} per cent got a pass, staff said.")),
        details=("{person}, the head teacher, said everyone at the school was very proud of the pupils.",
                 "Last year the figure was lower.",
                 "Several pupils are now heading to university.",
                 "The school has {k2} pupils."),
    ),
    dict(
        name="power", slots={"energy": _ENERGY}, n=(200, 50, 60),
        summary="Snow left {n} homes in {town} without power on {day}, {energy} said.",
        key=(("Heavy snow brought down power lines around {town} on {day}.",
              "Snow fell across {town} on {day}, bringing down power lines."),
             ("{energy} said {n} homes had lost their electricity supply.",
              "The company {energy} said {n} homes were left without power.")),
        details=("Engineers worked through the night to repair the lines.",
                 "{person} said the family had to use candles.",
                 "Schools in the area were also closed.",
                 "More snow is forecast for the coming days."),
    ),
    dict(
        name="rescue", slots={"animals": _ANIMALS}, n=(5, 1, 40),
        summary="{n} {animals} were rescued from a farm near {town} on {day}, the RSPCA said.",
        key=(("RSPCA officers visited a farm near {town} on {day} after a call from a neighbour.",
              "A farm outside {town} was raided by RSPCA officers on {day}."),
             ("They found {n} {animals} living in poor conditions and took them away.",
              "The charity said {n} {animals} were taken into its care.")),
        details=("The animals are being looked after at a centre in {town2}.",
                 "{person}, an RSPCA inspector, said some were very thin.",
                 "The owner could face a court case.",
                 "The charity is now looking for new homes for them."),
    ),
    dict(
        name="pet", slots={"pet": _PETS, "owner": FIRST_NAMES}, n=(3, 1, 40),
        summary="A {pet} missing for {n} days was found safe in {town} on {day}, its owner {owner} said.",
        key=(("{owner}'s {pet} went missing from home {n} days ago.",
              "It has been {n} days since {owner} last saw the family {pet}."),
             ("On {day} it was found safe in a garden in {town}, {owner} said.",
              "{owner} said the {pet} was found safe on {day} in a garden in {town}.")),
        details=("Posters had been put up all over {town}.",
                 "A neighbour heard a noise coming from a shed.",
                 "{owner} thanked everyone who helped with the search.",
                 "A vet said the animal was hungry but healthy."),
    ),
    dict(
        name="match", slots={"team": _TEAMS, "rival": TOWNS}, n=(2000, 100, 60),
        summary="{town} {team} beat {rival} on {day} in front of {n} fans.",
        key=(("{town} {team} won their home game against {rival} on {day}.",
              "On {day}, {town} {team} got the better of visitors {rival}."),
             ("The crowd of {n} fans cheered the winning goal late in the second half.",
              "A crowd of {n} watched the game at the home ground.")),
        details=("{person} scored the winning goal.",
                 "The result moves the team up to {k}th in the league.",
                 "The manager praised the players for their hard work.",
                 "The next game is away at {town2}."),
    ),
    dict(
        name="bus", slots={"busco": _BUS_COMPANIES}, n=(2, 1, 30),
        summary="{busco} will cut {n} bus routes in {town} from {day}, the firm said.",
        key=(("{busco}, which runs the buses in {town}, has announced cuts to its services.",
              "Bus services in {town} run by {busco} are being reduced."),
             ("From {day}, {n} routes will stop running.",
              "The company said {n} routes would end on {day}.")),
        details=("The firm blamed rising costs and fewer passengers.",
                 "{person}, who uses the bus every day, said it would be hard to get to work.",
                 "The council said it was looking for another operator.",
                 "Some villages around {town} will be left with no service."),
    ),
)

_DISTRACTOR_FIELDS: dict[str, Callable[[Draw, str], object]] = {
    "town2": lambda d, town: _other(d, TOWNS, town),
    "day2": lambda d, town: d.free(DAYS),
    "month": lambda d, town: d.free(MONTHS),
    "k2": lambda d, town: 100 * (2 + d.int(90)),
    "k3": lambda d, town: 3 + d.int(25),
    "person2": lambda d, town: _person(d),
    "company2": lambda d, town: d.free(COMPANIES),
}
_DISTRACTORS = (
    "Elsewhere, a new cafe opened in {town2} on {day2}.",
    "The {town2} summer show is due to return in {month}.",
    "Last year, a similar event in {town2} drew about {k2} people.",
    "Residents have been asked to report any problems to the council.",
    "The area has a population of about {k2} people.",
    "A separate meeting about parking in {town2} will be held on {day2}.",
    "Temperatures are expected to reach {k3} degrees later in the week.",
    "Local shops reported a busy week ahead of the bank holiday.",
    "{person2}, who has lived in the area for {k3} years, said the town had changed a lot.",
    "Road works on the high street in {town2} are due to finish in {month}.",
    "The town's library will close early on {day2} for staff training.",
    "A charity quiz night in {town2} raised {k2} pounds last month.",
    "Volunteers planted {k2} trees in the park in {month}.",
    "The market in {town2} moves to a new site next {month}.",
    "{company2} reported strong sales in the last year.",
    "A new cycle path between {town2} and the coast is being planned.",
    "The council will publish its budget in {month}.",
    "Police in {town2} said crime had fallen by {k3} per cent.",
    "Train services to {town2} were delayed on {day2} because of a signal fault.",
    "{person2} has been named the new head of the local chamber of trade.",
    "The swimming pool in {town2} reopened on {day2} after a refit.",
    "A public meeting about the plans is expected in {month}.",
    "The post office in {town2} will open on Sundays from {month}.",
    "Ticket prices at the {town2} leisure centre are going up by {k3} per cent.",
    "A farmers' market will be held in {town2} on {day2}.",
    "{person2} won a national baking prize last year.",
    "Parking charges in {town2} will rise in {month}.",
    "The local paper first reported the story on {day2}.",
    "A petition about dog fouling in {town2} has been signed by {k2} people.",
    "Work on a new roundabout outside {town2} is running {k3} weeks late.",
    "The mayor of {town2} is due to visit local schools on {day2}.",
    "A lost cat in {town2} was returned to its owner after {k3} days.",
    "Figures show house prices in the county rose by {k3} per cent last year.",
    "{company2} is moving its head office to {town2}.",
)
# (template, the fields it uses), parsed once at import
_DISTRACTORS = tuple((t, tuple(f for _, f, _, _ in string.Formatter().parse(t) if f)) for t in _DISTRACTORS)

# per difficulty: (number of distractors, number of details, how the sentence order is shuffled)
_SUMM_LEVELS = {1: ((2, 3), (1, 2), "lead"), 2: ((4, 5), (2, 3), "partial"), 3: ((7, 10), (3, 4), "full")}


def summarization_row(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the embedded summarization data (XSum format).

    A local-news article about one event (a flood, a factory fire, new jobs...) and a one-sentence summary
    that paraphrases and combines its key facts (who, what, how many, where, when, said whom). The document
    spreads the facts over several sentences, adds detail and distractor sentences (other towns, days and
    numbers) and, above difficulty 1, shuffles the sentence order.

    :param split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint by construction).
    :param index: the row, ``0 <= index < SPLIT_SIZES[split]``.
    :param difficulty: 1 (documents of about 65 words, key facts first), 2 (about 95 words) or 3 (about 145
        words, fully shuffled); summaries have 11-17 words at every difficulty.
    :return: ``{"document": str, "summary": str}``.
    """
    index = check_row(split, index, difficulty)
    d = Draw("summarization", split, index, difficulty)
    ev = d.fact(_EVENTS)
    slots = {name: d.fact(pool) for name, pool in ev["slots"].items()}
    town = slots["town"] = d.fact(TOWNS)
    slots["day"] = d.fact(DAYS)
    lo, step, count = ev["n"]
    slots["n"] = lo + step * d.pivot_i(count)
    slots.update(person=_person(d), town2=_other(d, TOWNS, town), month=d.free(MONTHS), k=2 + d.int(8),
                 k2=100 * (2 + d.int(90)))
    if "rival" in slots and slots["rival"] == town:  # a team does not play itself (still a key fact)
        slots["rival"] = "Old " + town

    (n_dis_lo, n_dis_hi), (n_det_lo, n_det_hi), order = _SUMM_LEVELS[difficulty]
    key = [d.free(group).format(**slots) for group in ev["key"]]
    details = list(ev["details"])
    d.shuffle(details)
    details = [t.format(**slots) for t in details[: n_det_lo + d.int(n_det_hi - n_det_lo + 1)]]
    n_dis = n_dis_lo + d.int(n_dis_hi - n_dis_lo + 1)
    distractors = []
    for template, fields in dict.fromkeys(d.free(_DISTRACTORS) for _ in range(n_dis)):  # no repeated sentence
        # each distractor draws its own other town, day, numbers... (only the fields it uses)
        distractors.append(template.format(**{f: _DISTRACTOR_FIELDS[f](d, town) for f in fields}))

    if order == "lead":  # key facts first, in order; then details and distractors
        body = details + distractors
        d.shuffle(body)
        sentences = key + body
    elif order == "partial":  # the first key sentence leads; everything else is shuffled
        body = key[1:] + details + distractors
        d.shuffle(body)
        sentences = key[:1] + body
    else:
        sentences = key + details + distractors
        d.shuffle(sentences)
    document = " ".join(upper_first(s) for s in sentences)
    return {"document": document, "summary": upper_first(ev["summary"].format(**slots))}


# ---------------------------------------------------------------------------------------------------
# Dialogue (DailyDialog-style two-speaker conversations)
# ---------------------------------------------------------------------------------------------------
# A scenario builds the history and the reply; the reply repeats facts stated in the history (the key
# facts), so it is predictable. Difficulty 2 adds a greeting exchange, difficulty 3 also small talk and,
# where a scenario supports it, a change of mind that the reply must follow.

_RESTAURANTS = ("Luigi's", "The Golden Dragon", "The Red Lion", "Casa Maria", "The Olive Tree", "Spice Garden",
                "The Blue Anchor", "Le Petit Bistro", "The Royal Oak", "Sakura", "The Green Man", "Bella Napoli",
                "The Curry House", "The Riverside Grill", "Taverna Athena", "The Old Mill")
_HOTELS = ("Grand Hotel", "Seaview Hotel", "Park Inn", "Castle Hotel", "Station Hotel", "Riverside Lodge",
           "Kings Arms Hotel", "Harbour Hotel")
_ROOMS = ("single", "double", "twin", "family")
_DATES = tuple(range(1, 29))
_LANDMARKS = ("museum", "train station", "town hall", "library", "post office", "cathedral", "market square",
              "art gallery", "bus station", "swimming pool", "police station", "castle", "university",
              "hospital", "park", "cinema", "theatre", "shopping centre", "bank", "harbour", "stadium",
              "zoo", "bakery", "pharmacy")
_MARKERS = ("traffic lights", "roundabout", "church", "petrol station", "supermarket", "bridge", "pub",
            "second corner")
_FILMS = ("The Silver River", "Night Train", "The Last Garden", "Storm Island", "Paper Moon", "The Quiet Hour",
          "Red Horizon", "City of Glass", "The Long Road", "Blue Summer", "The Lost Key", "Winter Lights",
          "Ocean Heart", "The Clockmaker", "Wild Hills", "The Secret Door", "Golden Days", "Iron Sky",
          "The Hidden Valley", "Small Wonders", "The Bright Side", "Falling Stars")
_SHOP_ITEMS = ("jacket", "scarf", "handbag", "umbrella", "sweater", "shirt", "dress", "hat", "backpack",
               "wallet", "lamp", "teapot", "blanket", "coat", "belt", "kettle")
_LOST_ITEMS = ("wallet", "umbrella", "phone", "scarf", "backpack", "glasses", "keys", "jacket", "camera",
               "notebook")
_LOST_PLACES = ("on the bus", "in the library", "at the cafe", "in the park", "at the gym", "on the train")
_CARS = ("small car", "family car", "van", "electric car", "estate car", "convertible")
_CLASSES = ("yoga", "pilates", "spinning", "boxing", "zumba", "aerobics", "swimming", "circuit training",
            "dance", "kickboxing")
_WEATHER = (("sunny", False), ("cloudy", False), ("rainy", True), ("windy", False), ("stormy", True),
            ("showery", True), ("dry and bright", False), ("wet", True))
_DEPARTMENTS = ("doctor", "dentist", "optician", "physio")

_GREETINGS = (("Good morning.", "Good morning! How can I help you?"),
              ("Hello there.", "Hi, what can I do for you today?"),
              ("Good afternoon.", "Good afternoon. How may I help?"),
              ("Hi, have you got a minute?", "Of course, how can I help?"))
_SMALL_TALK = (("It's very busy in here today.", "Yes, it always is at this time of year."),
               ("Sorry, I'm a bit out of breath, I ran all the way here.", "No problem at all, take your time."),
               ("Lovely weather today, isn't it?", "It is, let's hope it lasts."),
               ("I hope I'm not calling too late.", "Not at all, we're open until six."))


#: The proper names the summaries and dialogues draw from, by kind (:func:`text_envs.rewards.facts.gazetteer`
#: reads them to tell a name from a capitalised common word).
NAME_POOLS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "towns": TOWNS, "first_names": FIRST_NAMES, "surnames": SURNAMES, "days": DAYS, "months": MONTHS,
    "companies": COMPANIES, "bus_companies": _BUS_COMPANIES, "energy_companies": _ENERGY, "schools": _SCHOOLS,
    "bridges": _BRIDGES, "restaurants": _RESTAURANTS, "hotels": _HOTELS, "films": _FILMS,
})


def _dlg_restaurant(d: Draw, level: int) -> tuple[list[str], str]:
    rest = d.fact(_RESTAURANTS)
    party = d.fact(range(2, 9))
    day = d.fact(DAYS)
    change = level == 3 and d.int(2) == 1
    t_first = d.free(TIMES)
    time = d.fact(TIMES)
    name = d.pivot(SURNAMES)
    if level == 1:
        turns = [f"Hi, I'd like to book a table for {party} at {rest} on {day} at {time}, please.",
                 "Certainly. Can I take a name for the booking?", f"Yes, it's {name}."]
    else:
        turns = [d.free((f"Hello, I'd like to book a table at {rest}, please.",
                         f"Hi, is it possible to reserve a table at {rest}?")),
                 d.free(("Of course. For how many people?", "Certainly. How many will be dining?")),
                 d.free((f"There will be {party} of us.", f"For {party} people, please.")),
                 "And for which day and time?",
                 f"{day} at {t_first if change else time}, if possible.",
                 "Can I take a name for the booking?",
                 f"Yes, it's {name}."]
        if change:
            turns += ["Lovely, I've got that down.", f"Oh, sorry, could we make it {time} instead?"]
    reply = f"No problem, {name}. Your table for {party} at {rest} is booked for {time} on {day}."
    return turns, reply


def _dlg_hotel(d: Draw, level: int) -> tuple[list[str], str]:
    hotel = d.fact(_HOTELS)
    room = d.fact(_ROOMS)
    nights = d.fact(range(2, 8))
    month = d.fact(MONTHS)
    date = d.pivot(_DATES)
    if level == 1:
        turns = [f"I need a {room} room at the {hotel} for {nights} nights from {date} {month}.",
                 "Let me check. Yes, we have one. Shall I book it?", "Yes, please."]
    else:
        turns = [f"Hello, is this the {hotel}?", "Yes, it is. How can I help?",
                 f"I'd like to book a {room} room, please.", "Of course. When would you like to arrive?",
                 f"On {date} {month}.", "And how long will you be staying?", f"{nights} nights.",
                 "We have a room available. Shall I confirm it?", "Yes, please do."]
    reply = f"Done. Your {room} room at the {hotel} is booked for {nights} nights from {date} {month}."
    return turns, reply


def _dlg_train(d: Draw, level: int) -> tuple[list[str], str]:
    time = d.fact(TIMES)
    platform = d.fact(range(1, 10))
    is_return = d.flag(1 / 2)
    kind = "return" if is_return else "single"
    price = d.fact(range(8, 40))
    dest = d.pivot(TOWNS)
    single, ret = (price, price + 5 + price // 2)
    if level == 1:
        turns = [f"A {kind} to {dest}, please. How much is it?",
                 f"A single is {single} pounds and a return is {ret} pounds. The next train is at {time} "
                 f"from platform {platform}.", "Here you are."]
    else:
        turns = [f"When is the next train to {dest}?",
                 f"The next one leaves at {time} from platform {platform}.",
                 "How much are the tickets?",
                 f"A single is {single} pounds and a return is {ret} pounds.",
                 d.free((f"I'll take a {kind}, please.", f"A {kind}, please."))]
    reply = (f"Here is your {kind} ticket to {dest}. That's {ret if is_return else single} pounds, and the "
             f"train leaves at {time} from platform {platform}.")
    return turns, reply


def _dlg_appointment(d: Draw, level: int) -> tuple[list[str], str]:
    dept = d.fact(_DEPARTMENTS)
    day = d.fact(DAYS)
    time = d.fact(TIMES)
    doc = d.pivot(SURNAMES)
    title = "Dr" if dept in ("doctor", "dentist") else "Mr"
    if level == 1:
        turns = [f"I need an appointment with the {dept}, please.",
                 f"{title} {doc} is free on {day} at {time}. Does that suit you?", "Yes, that's fine."]
    else:
        other_day = _other(d, DAYS, day)
        other_time = _other(d, TIMES, time)
        first = d.int(2) == 0  # is the chosen slot offered first?
        offer = [(day, time), (other_day, other_time)]
        if not first:
            offer.reverse()
        turns = [f"Hello, I'd like to see the {dept}, please.", "Are you already registered with us?",
                 "Yes, I am.",
                 f"{title} {doc} can see you on {offer[0][0]} at {offer[0][1]} or on {offer[1][0]} at "
                 f"{offer[1][1]}.",
                 d.free((f"{day} would be better for me.", f"I'll take the {day} one, please."))]
    reply = f"Great, you're booked in with {title} {doc} on {day} at {time}."
    return turns, reply


def _dlg_shop(d: Draw, level: int) -> tuple[list[str], str]:
    item = d.fact(_SHOP_ITEMS)
    colour = d.fact(COLOURS)
    price = d.pivot(range(10, 100))
    if level == 1:
        turns = [f"Do you have this {item} in {colour}?", f"Yes, we do. It's {price} pounds.",
                 "Great, I'll take it."]
    else:
        first = _other(d, COLOURS, colour)
        turns = [f"Excuse me, how much is this {item}?", f"That one is {price} pounds.",
                 f"It's nice, but I don't really like {first}. Do you have it in {colour}?",
                 f"Let me look. Yes, here's one in {colour}.", "Perfect, I'll take it."]
    reply = f"Here you go, one {colour} {item}. That's {price} pounds, please."
    return turns, reply


def _dlg_weather(d: Draw, level: int) -> tuple[list[str], str]:
    day = d.fact(DAYS)
    cond, wet = d.fact(_WEATHER)
    temp = d.fact(range(4, 29))
    town = d.pivot(TOWNS)
    turns = [f"What's the weather going to be like in {town} on {day}?",
             f"The forecast says it will be {cond}, with highs of {temp} degrees.",
             "Do you think I'll need an umbrella?"]
    if level >= 2:
        turns[2:2] = ["Is that warmer than today?", "A little, yes.",
                      f"I'm going to {town} on {day} for a walk."]
    if wet:
        reply = f"Yes, take an umbrella. It will be {cond} in {town} on {day}, with highs of {temp} degrees."
    else:
        reply = f"No, you won't need one. It will be {cond} in {town} on {day}, with highs of {temp} degrees."
    return turns, reply


def _dlg_directions(d: Draw, level: int) -> tuple[list[str], str]:
    minutes = d.fact(range(2, 11))
    side = d.fact(("left", "right"))
    marker = d.fact(_MARKERS)
    place = d.pivot(_LANDMARKS)
    turns = [f"Excuse me, how do I get to the {place}?",
             f"Go straight on for {minutes} minutes and turn {side} at the {marker}.",
             "Sorry, could you say that again?"]
    if level >= 2:
        turns[1:1] = ["Are you walking or driving?", "I'm walking."]
    reply = f"Sure. Walk straight on for {minutes} minutes, then turn {side} at the {marker} and you'll see the {place}."
    return turns, reply


def _dlg_cinema(d: Draw, level: int) -> tuple[list[str], str]:
    seats = d.fact(range(1, 7))
    time = d.fact(TIMES)
    film = d.pivot(_FILMS)
    tickets = f"{seats} ticket{'s' if seats > 1 else ''}"
    if level == 1:
        turns = [f"{tickets} for {film} at {time}, please.", "Would you like seats near the front?",
                 "No, somewhere in the middle, please."]
    else:
        other = _other(d, TIMES, time)
        later = TIMES.index(time) > TIMES.index(other)
        shows = (other, time) if later else (time, other)
        turns = [f"When is {film} showing tonight?", f"There are showings at {shows[0]} and {shows[1]}.",
                 f"The {'later' if later else 'earlier'} one, please. {tickets}."]
    reply = f"That's {tickets} for {film} at {time}. Enjoy the film!"
    return turns, reply


def _dlg_lost(d: Draw, level: int) -> tuple[list[str], str]:
    where = d.fact(_LOST_PLACES)
    colour = d.fact(COLOURS)
    item = d.fact(_LOST_ITEMS)
    owner = d.pivot(FIRST_NAMES)
    turns = [f"I think I left my {item} {where} this morning.", "What does it look like?",
             f"It's {colour}, and it has the name {owner} on it."]
    if level >= 2:
        turns[1:1] = ["Oh dear. What time was that?", f"About {d.free(TIMES)}, I think."]
    reply = f"Good news, {owner}. A {colour} {item} found {where} was handed in, so you can collect it today."
    return turns, reply


def _dlg_car(d: Draw, level: int) -> tuple[list[str], str]:
    car = d.fact(_CARS)
    days = d.fact(range(2, 15))
    month = d.fact(MONTHS)
    date = d.pivot(_DATES)
    turns = [f"I'd like to hire a {car}, please.", "Certainly. For how many days?",
             f"For {days} days, starting on {date} {month}."]
    if level >= 2:
        turns += ["Do you have a full driving licence?", "Yes, I've had it for years."]
    reply = f"Perfect. Your {car} is reserved for {days} days from {date} {month}."
    return turns, reply


def _dlg_haircut(d: Draw, level: int) -> tuple[list[str], str]:
    day = d.fact(DAYS)
    time = d.fact(TIMES)
    stylist = d.pivot(FIRST_NAMES)
    change = level == 3 and d.int(2) == 1
    t_first = _other(d, TIMES, time)
    turns = [f"Could I book a haircut with {stylist}?", "Sure, which day would you like?",
             f"{day} at {t_first if change else time}, if that's free."]
    if level >= 2:
        turns += [f"{stylist} has that slot free. Just a trim?", "Yes, just a trim."]
    if change:
        turns += [f"Actually, could I come at {time} instead?"]
    reply = f"All done. You're booked with {stylist} on {day} at {time}."
    return turns, reply


def _dlg_delivery(d: Draw, level: int) -> tuple[list[str], str]:
    item = d.fact(_SHOP_ITEMS)
    day = d.fact(DAYS)
    order = 10_000 + d.pivot_i(90_000)
    turns = [f"I ordered a {item} on {day} and it still hasn't arrived.", "Can you give me the order number?",
             f"Yes, it's {order}."]
    if level >= 2:
        turns[1:1] = ["I'm sorry to hear that. Did you get a confirmation email?", "Yes, I did."]
    reply = f"Thanks. Order {order} for the {item} you ordered on {day} is on its way and will arrive tomorrow."
    return turns, reply


def _dlg_gym(d: Draw, level: int) -> tuple[list[str], str]:
    day = d.fact(DAYS)
    cls = d.fact(_CLASSES)
    time = d.pivot(TIMES)
    other_cls = _other(d, _CLASSES, cls)
    other_time = _other(d, TIMES, time)
    first = d.int(2) == 0
    pair = [(cls, time), (other_cls, other_time)]
    if not first:
        pair.reverse()
    turns = [f"Which classes do you have on {day}?",
             f"There's {pair[0][0]} at {pair[0][1]} and {pair[1][0]} at {pair[1][1]}.",
             f"I'd like to join the {cls} class, please."]
    if level >= 2:
        turns[2:2] = ["Do I need to bring anything?", "Just a towel and some water."]
    reply = f"You're signed up for {cls} at {time} on {day}."
    return turns, reply


_SCENARIOS: tuple[Callable[[Draw, int], tuple[list[str], str]], ...] = (
    _dlg_restaurant, _dlg_hotel, _dlg_train, _dlg_appointment, _dlg_shop, _dlg_weather, _dlg_directions,
    _dlg_cinema, _dlg_lost, _dlg_car, _dlg_haircut, _dlg_delivery, _dlg_gym,
)


def dialogue_row(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the embedded dialogue data (DailyDialog format).

    A two-speaker conversation (booking a table, a hotel room or a haircut, buying a ticket, asking the way,
    the weather, a lost item...). The last turn is the reference reply; it answers or confirms using facts
    from the history (times, places, names, prices), so it is predictable from the earlier turns. Turns
    alternate speakers and carry no speaker tags.

    :param split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint by construction: no reply of one
        split appears in another).
    :param index: the row, ``0 <= index < SPLIT_SIZES[split]``.
    :param difficulty: 1 (4 turns: 3 of history, then the reply), 2 (6-12 turns, with a greeting) or 3
        (8-14 turns, also small talk and changes of mind the reply must follow).
    :return: ``{"dialog": list[str]}`` with at least 3 turns.
    """
    index = check_row(split, index, difficulty)
    d = Draw("dialogue", split, index, difficulty)
    scenario = d.fact(_SCENARIOS)
    turns, reply = scenario(d, difficulty)
    if difficulty >= 2:
        opener = list(d.free(_GREETINGS))
        if difficulty == 3:
            opener += list(d.free(_SMALL_TALK))
        turns = opener + turns
    if len(turns) % 2 == 0:  # the reply is always spoken by the second speaker ("B")
        turns.insert(0, d.free(("Hello?", "Hi.", "Excuse me.")))
    return {"dialog": turns + [reply]}


# ---------------------------------------------------------------------------------------------------
# Translation: English -> "syn"
# ---------------------------------------------------------------------------------------------------

# (singular, plural); no noun whose plural equals its singular (sentences must spell out every choice)
_PEOPLE = (("farmer", "farmers"), ("teacher", "teachers"), ("doctor", "doctors"), ("child", "children"),
           ("woman", "women"), ("man", "men"), ("girl", "girls"), ("boy", "boys"), ("baker", "bakers"),
           ("driver", "drivers"), ("student", "students"), ("soldier", "soldiers"), ("king", "kings"),
           ("queen", "queens"), ("sailor", "sailors"), ("nurse", "nurses"), ("painter", "painters"),
           ("singer", "singers"), ("fisherman", "fishermen"), ("merchant", "merchants"),
           ("neighbour", "neighbours"), ("friend", "friends"), ("mother", "mothers"), ("father", "fathers"),
           ("brother", "brothers"), ("sister", "sisters"), ("cook", "cooks"), ("guard", "guards"))
_ANIMALS_T = (("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"), ("cow", "cows"),
              ("goat", "goats"), ("fox", "foxes"), ("wolf", "wolves"), ("mouse", "mice"), ("bear", "bears"),
              ("duck", "ducks"), ("rabbit", "rabbits"))
_THINGS = (("apple", "apples"), ("book", "books"), ("letter", "letters"), ("house", "houses"),
           ("boat", "boats"), ("car", "cars"), ("bag", "bags"), ("cup", "cups"), ("chair", "chairs"),
           ("table", "tables"), ("door", "doors"), ("window", "windows"), ("key", "keys"), ("box", "boxes"),
           ("coat", "coats"), ("hat", "hats"), ("egg", "eggs"), ("cake", "cakes"), ("flower", "flowers"),
           ("basket", "baskets"), ("lamp", "lamps"), ("ring", "rings"), ("song", "songs"), ("map", "maps"),
           ("ball", "balls"), ("knife", "knives"), ("shoe", "shoes"), ("clock", "clocks"), ("stone", "stones"),
           ("candle", "candles"), ("bottle", "bottles"), ("picture", "pictures"), ("wheel", "wheels"),
           ("bell", "bells"), ("blanket", "blankets"), ("loaf", "loaves"))
_PLACES_T = ("garden", "market", "river", "kitchen", "school", "park", "station", "forest", "village",
             "bridge", "church", "shop", "hill", "lake", "field", "road", "harbour", "castle", "farm", "town")
_PREPS = ("in", "near", "at", "behind", "beside", "under", "across", "from")
# (base, third person singular, past); no verb whose past equals its base (put, cut, read...)
_VERBS_THING = (("buy", "buys", "bought"), ("sell", "sells", "sold"), ("carry", "carries", "carried"),
                ("find", "finds", "found"), ("lose", "loses", "lost"), ("paint", "paints", "painted"),
                ("clean", "cleans", "cleaned"), ("wash", "washes", "washed"), ("open", "opens", "opened"),
                ("break", "breaks", "broke"), ("fix", "fixes", "fixed"), ("drop", "drops", "dropped"),
                ("hold", "holds", "held"), ("bring", "brings", "brought"), ("take", "takes", "took"),
                ("want", "wants", "wanted"), ("hide", "hides", "hid"), ("give", "gives", "gave"),
                ("make", "makes", "made"), ("keep", "keeps", "kept"), ("throw", "throws", "threw"),
                ("draw", "draws", "drew"), ("fill", "fills", "filled"), ("move", "moves", "moved"))
_VERBS_BEING = (("see", "sees", "saw"), ("help", "helps", "helped"), ("call", "calls", "called"),
                ("follow", "follows", "followed"), ("meet", "meets", "met"), ("thank", "thanks", "thanked"),
                ("teach", "teaches", "taught"), ("watch", "watches", "watched"), ("feed", "feeds", "fed"),
                ("wake", "wakes", "woke"), ("chase", "chases", "chased"), ("greet", "greets", "greeted"))
_VERBS_INTR = (("sleep", "sleeps", "slept"), ("laugh", "laughs", "laughed"), ("run", "runs", "ran"),
               ("walk", "walks", "walked"), ("sing", "sings", "sang"), ("wait", "waits", "waited"),
               ("cry", "cries", "cried"), ("swim", "swims", "swam"), ("work", "works", "worked"),
               ("dance", "dances", "danced"), ("shout", "shouts", "shouted"), ("smile", "smiles", "smiled"),
               ("arrive", "arrives", "arrived"), ("rest", "rests", "rested"), ("play", "plays", "played"),
               ("eat", "eats", "ate"))
_ADJECTIVES = ("red", "old", "small", "big", "happy", "young", "green", "tall", "quiet", "brave", "clever",
               "heavy", "new", "white", "black", "tired", "kind", "little", "strong", "beautiful", "angry",
               "cold", "warm", "busy", "poor", "rich", "blue", "wooden", "broken", "clean", "dirty", "sad",
               "lazy", "gentle", "bright", "dark", "golden", "strange", "hungry", "wise")
_DETS_SG = ("the", "a", "this", "that", "my", "his", "her", "our", "your", "their")
_DETS_PL = ("the", "these", "those", "my", "his", "her", "our", "your", "their", "some")
# (English words, tense) ; tense: 0 present, 1 past, 2 future
_TIMES_T = ((("yesterday",), 1), (("last", "night"), 1), (("last", "week"), 1), (("this", "morning"), 1),
            (("every", "day"), 0), (("every", "morning"), 0), (("today",), 0), (("often",), 0),
            (("tomorrow",), 2), (("next", "week"), 2), (("soon",), 2), (("tonight",), 2))
_CONJS = ("and", "but", "because", "while", "so", "when")
_SUBJECTS = _PEOPLE + _ANIMALS_T
_BEINGS = _PEOPLE + _ANIMALS_T

_SYN_PLURAL, _SYN_PAST, _SYN_FUTURE = "ri", "ko", "sa"
_SYN_CONS = "bdfgklmnprstvz"
_SYN_VOWELS = "aeiou"


def _build_lexicon() -> dict[str, str]:
    """Map every English lemma used by the grammar to an invented syn word (stable per word)."""
    words = set(_ADJECTIVES) | set(_DETS_SG) | set(_DETS_PL) | set(_PLACES_T) | set(_PREPS) | set(_CONJS)
    words |= {sg for sg, _ in _SUBJECTS + _THINGS} | {v[0] for v in _VERBS_THING + _VERBS_BEING + _VERBS_INTR}
    words |= {w for phrase, _ in _TIMES_T for w in phrase}
    english = words | {f for group in (_PEOPLE, _ANIMALS_T, _THINGS) for pair in group for f in pair}
    lexicon: dict[str, str] = {}
    used: set[str] = set()
    for word in sorted(words):
        for attempt in range(1000):  # the first unused candidate; depends only on the word (and rare clashes)
            h = int.from_bytes(hashlib.sha256(f"syn:{word}:{attempt}".encode()).digest(), "big")
            syllables = 2 if len(word) <= 3 else 2 + h % 2
            h //= 2
            syn = ""
            for _ in range(syllables):
                syn += _SYN_CONS[h % 14] + _SYN_VOWELS[(h // 14) % 5]
                h //= 70
            if len(word) > 3 and h % 3 == 0:
                syn += "nlmr"[(h // 3) % 4]
            if syn not in used and syn not in english and not syn.endswith((_SYN_PAST, _SYN_FUTURE, _SYN_PLURAL)):
                break
        lexicon[word] = syn
        used.add(syn)
    return lexicon


SYN_LEXICON: Mapping[str, str] = MappingProxyType(_build_lexicon())
"""English lemma -> syn word (read-only). Inflections follow the rules in the module docstring."""
_SYN_A = SYN_LEXICON["a"]


def _np(d: Draw, pool: Sequence[tuple[str, str]], n_adj: int, subject_pivot: bool) -> tuple[list, list, bool]:
    """A noun phrase as (English words, syn words, plural?)."""
    plural = d.flag(1 / 2)
    numeral = plural and d.flag(1 / 3)  # a digit instead of a determiner
    if numeral:
        det_en = det_syn = str(d.fact(range(2, 100)))
    else:
        det_en = d.fact(_DETS_PL if plural else _DETS_SG)
        det_syn = SYN_LEXICON[det_en]
    adjs = [d.fact(_ADJECTIVES) for _ in range(n_adj)]
    noun = d.pivot(pool) if subject_pivot else d.fact(pool)
    word_en = noun[1] if plural else noun[0]
    if det_en == "a" and (adjs[0] if adjs else word_en)[0] in "aeiou":
        det_en = "an"
    en = [det_en, *adjs, word_en]
    syn = [det_syn, SYN_LEXICON[noun[0]] + (_SYN_PLURAL if plural else ""), *(SYN_LEXICON[a] for a in adjs)]
    return en, syn, plural


def _clause(d: Draw, level: int, pivot: bool) -> tuple[list[str], list[str]]:
    """One clause: English (subject verb object place time) and syn (subject time object place verb)."""
    max_adj = (0, 1, 2)[level - 1]
    kind = d.fact_i(3)  # 0: thing object, 1: being object, 2: intransitive
    has_time = level >= 2 and d.flag(2 / 3)
    if has_time:
        time_words, tense = d.fact(_TIMES_T)
    else:
        time_words, tense = (), d.fact_i(2)  # present or past
    has_place = level >= 2 and d.flag(1 / 2)
    if has_place:
        prep, place = d.fact(_PREPS), d.fact(_PLACES_T)
    verb = d.fact((_VERBS_THING, _VERBS_BEING, _VERBS_INTR)[kind])
    obj_en, obj_syn = [], []
    if kind < 2:
        obj_en, obj_syn, _ = _np(d, (_THINGS, _BEINGS)[kind], d.fact_i(max_adj + 1), False)
    subj_en, subj_syn, subj_plural = _np(d, _SUBJECTS, d.fact_i(max_adj + 1), pivot)

    if tense == 1:
        verb_en = [verb[2]]
    elif tense == 2:
        verb_en = ["will", verb[0]]
    else:
        verb_en = [verb[0] if subj_plural else verb[1]]
    verb_syn = SYN_LEXICON[verb[0]] + ("", _SYN_PAST, _SYN_FUTURE)[tense]
    place_en = ["the", place] if has_place else []
    en = subj_en + verb_en + obj_en + ([prep] + place_en if has_place else []) + list(time_words)
    syn = subj_syn + [SYN_LEXICON[w] for w in time_words] + obj_syn
    if has_place:
        syn += [SYN_LEXICON["the"], SYN_LEXICON[place], SYN_LEXICON[prep]]
    syn.append(verb_syn)
    return en, syn


def translation_row(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the embedded English -> syn translation data (WMT16 format).

    English sentences from a small grammar (people, animals and things doing things, with adjectives,
    numbers, places and times) and their translation into "syn", the rule-based invented language described
    in the module docstring (see :data:`SYN_LEXICON`).

    :param split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint by construction: no English sentence
        of one split appears in another).
    :param index: the row, ``0 <= index < SPLIT_SIZES[split]``.
    :param difficulty: 1 (one short clause, 3-5 English words), 2 (adjectives, places, times; about 8
        words) or 3 (two clauses, more adjectives; about 18 words).
    :return: ``{"translation": {"en": str, "syn": str}}``.
    """
    index = check_row(split, index, difficulty)
    d = Draw("translation", split, index, difficulty)
    if difficulty == 3:
        conj = d.fact(_CONJS)
        en2, syn2 = _clause(d, difficulty, pivot=False)
        en1, syn1 = _clause(d, difficulty, pivot=True)
        en = en1 + [conj] + en2
        syn = syn1 + [SYN_LEXICON[conj]] + syn2
    else:
        en, syn = _clause(d, difficulty, pivot=True)
    return {"translation": {"en": upper_first(" ".join(en)) + ".", "syn": upper_first(" ".join(syn)) + "."}}
