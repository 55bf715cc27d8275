"""A small labelled retrieval set: paragraphs of well-known public-domain facts (written for promptd) and
questions, each labelled with the paragraph that answers it. Used by bench/knowledge.py for recall@5."""

from __future__ import annotations

__all__ = ["PARAGRAPHS", "QUESTIONS"]

PARAGRAPHS: dict[str, str] = {
    "seine": "The Seine runs for about 777 kilometres across northern France. It passes through Paris, where "
    "dozens of bridges cross it, and ends in the English Channel near Le Havre.",
    "thames": "The River Thames flows through London and the south of England. Its tidal stretch reaches "
    "Teddington Lock, and its estuary opens onto the North Sea.",
    "nile": "The Nile, often called the longest river in the world, flows north through eastern Africa into "
    "Egypt. Its waters end in a wide delta on the Mediterranean Sea near Alexandria.",
    "amazon": "The Amazon carries more water than any other river. It crosses Brazil from the Andes to the "
    "Atlantic Ocean, through the largest tropical rainforest on Earth.",
    "everest": "Mount Everest, in the Himalaya on the border between Nepal and China, is the highest mountain "
    "above sea level, at 8,849 metres. Tenzing Norgay and Edmund Hillary first reached its summit in 1953.",
    "kilimanjaro": "Kilimanjaro is a dormant volcano in Tanzania and the highest mountain in Africa. Its "
    "summit, Uhuru Peak, stands near 5,895 metres and still carries shrinking glaciers.",
    "jupiter": "Jupiter is the largest planet of the Solar System, a gas giant more than twice as massive as "
    "all the other planets together. Its Great Red Spot is a storm larger than Earth.",
    "mars": "Mars, the fourth planet from the Sun, looks red because of iron oxide dust. It has two small "
    "moons, Phobos and Deimos, and the tallest volcano known, Olympus Mons.",
    "saturn": "Saturn is famous for its bright rings of ice and rock. It is the second largest planet and so "
    "light for its size that its mean density is below that of water.",
    "moon_landing": "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong and Buzz Aldrin walked on "
    "the surface while Michael Collins stayed in orbit aboard the command module.",
    "penicillin": "Alexander Fleming noticed in 1928 that a mould, Penicillium, killed bacteria on a culture "
    "plate in his London laboratory. The antibiotic penicillin grew out of that observation.",
    "dna": "In 1953 James Watson and Francis Crick proposed the double helix structure of DNA, using X-ray "
    "images of the molecule made by Rosalind Franklin and Maurice Wilkins.",
    "gravity": "Isaac Newton described universal gravitation in his Principia of 1687: every mass attracts "
    "every other with a force that falls with the square of the distance between them.",
    "relativity": "Albert Einstein published the special theory of relativity in 1905, with the equation "
    "relating mass and energy, and the general theory, a new account of gravity, in 1915.",
    "printing": "Johannes Gutenberg built a printing press with movable metal type in Mainz around 1440. "
    "His printed Bible, finished about 1455, is among the first books made that way in Europe.",
    "telephone": "Alexander Graham Bell received a patent for the telephone in 1876. His first words over the "
    "line were a call to his assistant Thomas Watson to come to him.",
    "lightbulb": "Thomas Edison's laboratory at Menlo Park developed a long-lasting incandescent light bulb "
    "with a carbon filament in 1879, and then a system to supply electricity to homes.",
    "pyramid": "The Great Pyramid of Giza was built for the pharaoh Khufu around 2560 BC. For nearly four "
    "thousand years it was the tallest structure made by people.",
    "great_wall": "The Great Wall of China is a series of fortifications built over many centuries against "
    "raids from the northern steppe. Most of what stands today dates from the Ming dynasty.",
    "colosseum": "The Colosseum in Rome is an oval amphitheatre completed in 80 AD under the emperor Titus. "
    "It held tens of thousands of spectators for gladiator fights and public shows.",
    "magna_carta": "King John of England agreed to Magna Carta at Runnymede in 1215. The charter limited the "
    "power of the crown and is remembered as an early statement of the rule of law.",
    "revolution_fr": "The French Revolution began in 1789; the storming of the Bastille on 14 July became "
    "France's national day. The monarchy was abolished in 1792.",
    "independence": "The Declaration of Independence of the United States was adopted on 4 July 1776 in "
    "Philadelphia. Thomas Jefferson wrote most of its text.",
    "shakespeare": "William Shakespeare, born in Stratford-upon-Avon in 1564, wrote plays such as Hamlet, "
    "Macbeth and Romeo and Juliet, many staged at the Globe Theatre in London.",
    "beethoven": "Ludwig van Beethoven composed nine symphonies. He kept composing after he lost his hearing; "
    "the Ninth Symphony, with its choral finale, was first performed in Vienna in 1824.",
    "mona_lisa": "Leonardo da Vinci painted the Mona Lisa in the early sixteenth century. The portrait hangs "
    "in the Louvre museum in Paris behind protective glass.",
    "olympics": "The modern Olympic Games were first held in Athens in 1896, revived by Pierre de Coubertin "
    "after the ancient games of Olympia in Greece.",
    "pacific": "The Pacific is the largest and deepest ocean. Its Mariana Trench reaches nearly 11,000 metres "
    "below the surface at the Challenger Deep.",
    "sahara": "The Sahara is the largest hot desert in the world, covering much of North Africa. Its sand "
    "dunes can rise higher than 150 metres.",
    "photosynthesis": "In photosynthesis, plants use the energy of sunlight to turn carbon dioxide and water "
    "into sugar, releasing oxygen. Chlorophyll in the leaves absorbs the light.",
    "water_boiling": "At sea level pure water boils at 100 degrees Celsius and freezes at 0 degrees. On a high "
    "mountain, where air pressure is lower, water boils at a lower temperature.",
    "speed_of_light": "Light travels through a vacuum at about 299,792 kilometres per second. Sunlight takes "
    "roughly eight minutes to reach the Earth.",
}

QUESTIONS: list[tuple[str, str]] = [
    ("Which river runs through Paris?", "seine"),
    ("Where does the Thames meet the sea?", "thames"),
    ("Which river ends in a delta near Alexandria?", "nile"),
    ("What river carries the most water through the rainforest?", "amazon"),
    ("Who first climbed the highest mountain in 1953?", "everest"),
    ("What is the highest mountain in Africa?", "kilimanjaro"),
    ("Which planet has the Great Red Spot?", "jupiter"),
    ("Why does Mars look red?", "mars"),
    ("Which planet would float in water because of its low density?", "saturn"),
    ("Who walked on the Moon during Apollo 11?", "moon_landing"),
    ("Who discovered penicillin?", "penicillin"),
    ("Who proposed the double helix?", "dna"),
    ("In which book did Newton describe gravitation?", "gravity"),
    ("When did Einstein publish general relativity?", "relativity"),
    ("Who invented the printing press with movable type?", "printing"),
    ("Who patented the telephone?", "telephone"),
    ("Where was the carbon filament light bulb developed?", "lightbulb"),
    ("For which pharaoh was the Great Pyramid built?", "pyramid"),
    ("Which dynasty built most of the Great Wall we see today?", "great_wall"),
    ("Under which emperor was the Colosseum completed?", "colosseum"),
    ("Where did King John agree to Magna Carta?", "magna_carta"),
    ("When was the Bastille stormed?", "revolution_fr"),
    ("Who wrote the Declaration of Independence?", "independence"),
    ("Where was Shakespeare born?", "shakespeare"),
    ("How many symphonies did Beethoven compose?", "beethoven"),
    ("In which museum is the Mona Lisa?", "mona_lisa"),
    ("Where were the first modern Olympic Games held?", "olympics"),
    ("How deep is the Mariana Trench?", "pacific"),
    ("What is the largest hot desert?", "sahara"),
    ("How do plants make sugar from sunlight?", "photosynthesis"),
    ("At what temperature does water boil at sea level?", "water_boiling"),
    ("How long does sunlight take to reach Earth?", "speed_of_light"),
]
